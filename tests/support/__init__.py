"""Plain helpers the whole suite shares (no fixtures are defined here; tests/conftest.py wraps the
suite-wide ones):

- `paths.REPO`: the repository root.
- `ports.free_port`: a free loopback port for a server a test starts.
- `waiting.wait_until`: poll a server's readiness, failing early if its process exits.
- `auth`: the tests' bearer tokens, their request headers and the ``SEGPIPE_TOKENS`` value.
- `clock.Clock`: a settable clock for the stores.
- `settings.settings_for`: `Settings` with every folder inside one test's tmp_path.
- `postgres`: a uniquely named PostgreSQL database per use, created and dropped.
- `redis_db.flush_or_skip`: a clean Redis broker database, or a skip saying Redis is unreachable.
- servers: `live_server` (uvicorn, segpipe processes), `labelstudio_server`, `s3_server` (moto).
- `hostile_files`: hostile inputs (decompression bombs).
"""
