"""Suite-wide settings: one torch thread everywhere.

On a shared CPU, torch's OpenMP threads busy-wait (steps got 5–40× slower), and float reductions split
over threads change results in the last bits, which a fixed-seed learning comparison can amplify. Set
before torch is imported, so worker subprocesses the tests start inherit it too; a test that checks
the thread default sets or removes ``OMP_NUM_THREADS`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

# `make test` runs the suite in two pytest-xdist processes (gw0, gw1). Each gets Redis databases of its
# own, three below the previous worker's (11, 12, 13 → 8, 9, 10), because the integration fixtures flush
# theirs between tests. Only in a worker: the controlling process leaves the environment alone, or the
# workers it starts would inherit its values.
_REDIS_DEFAULTS = {"SEGPIPE_TEST_INTEGRATION_REDIS_URL": 11, "SEGPIPE_TEST_MULTINODE_REDIS_URL": 12,
                   "SEGPIPE_TEST_REDIS_URL": 13}
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER:
    _shift = 3 * int(_XDIST_WORKER.removeprefix("gw"))
    for _name, _database in _REDIS_DEFAULTS.items():
        _base, _, _number = os.environ.get(_name, f"redis://127.0.0.1:6379/{_database}").rpartition("/")
        if int(_number) < _shift:
            raise RuntimeError(f"{_name}: no Redis database left for xdist worker {_XDIST_WORKER}; run fewer workers")
        os.environ[_name] = f"{_base}/{int(_number) - _shift}"
    # xdist's worker processes start with COLUMNS=80 and LINES=24 in their environment, which rich's
    # module-level consoles freeze as their size at import: the CLI tests then see tables wrapped at 80
    # columns whatever COLUMNS they pass. Without them, as in a one-process run, rich reads COLUMNS per call.
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

# One real Label Studio server per test session, shared by every module that asks for it (it takes
# minutes to start on a busy machine); defined here so that pytest sees a single session fixture.
import pytest  # noqa: E402

from segpipe.settings import Settings  # noqa: E402

# The trained Mask R-CNN the engine's tests and the Label Studio box-to-mask test share (trained once).
from tests.engine.instance_run import instance_run  # noqa: E402,F401
from tests.support.clock import Clock  # noqa: E402
from tests.support.labelstudio_server import label_studio_server  # noqa: E402,F401

# One S3-API server for the whole session: a session fixture imported into several modules would be one
# server per module, each re-pointing AWS_ENDPOINT_URL while clients made earlier keep the old one.
from tests.support.s3_server import s3_server  # noqa: E402,F401
from tests.support.settings import settings_for  # noqa: E402


@pytest.fixture
def clock() -> Clock:
    """A settable clock for the stores (`tests.support.clock`): a test moves time instead of sleeping."""
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with home, data root, artifact root and broker inside the test's tmp_path; the API's
    tests override it with tokens and limits (tests/api/conftest.py)."""
    return settings_for(tmp_path)
