"""The Redis databases the tests use as brokers (``SEGPIPE_TEST_*_REDIS_URL``, one set per xdist process:
tests/conftest.py)."""

from __future__ import annotations

import pytest
import redis


def flush_or_skip(url: str) -> None:
    """Empty the Redis database at ``url`` for a test that starts from a clean broker; skip the test,
    saying why, when Redis cannot be reached."""
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {url} is unreachable ({exc})")
