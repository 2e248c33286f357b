"""Store fixtures: every store test runs on a SQLite file and on a real PostgreSQL.

PostgreSQL: a uniquely named database per session (`tests.support.postgres`), dropped at the end. The
PostgreSQL cases skip, saying why, only when that server cannot be reached. ``clock`` is the suite's
(tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import URL

from segpipe.stores.db import Store
from segpipe.stores.jobs import JobStore
from segpipe.stores.models import Job, ModelVersion, Prediction, PredictionImage, PromotionDecision, RetrainSlot
from tests.support.clock import Clock
from tests.support.postgres import BACKENDS, pg_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[URL]:
    with pg_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str | URL:
    """A migrated-or-not database URL: a fresh SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'segpipe.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str | URL]:
    """An empty database that no migration has touched (its own PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with pg_database() as url:
        yield url


def _open(url: str | URL) -> Store:
    return Store.from_url(url)


def _close(store: Store) -> None:
    if store.dialect == "postgresql":
        # The PostgreSQL database lives for the whole session: leave it empty for the next test.
        with store.write() as session:
            for table in (Prediction, PredictionImage, PromotionDecision, RetrainSlot, ModelVersion, Job):
                session.execute(delete(table))
    store.dispose()


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    """A migrated store, once per backend."""
    store = _open(db_url)
    yield store
    _close(store)


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:
    """For the few checks that are about SQLite itself."""
    store = _open(f"sqlite:///{tmp_path / 'segpipe.db'}")
    yield store
    _close(store)


@pytest.fixture
def pg_store(pg_url) -> Iterator[Store]:
    """For the few checks that are about PostgreSQL itself."""
    store = _open(pg_url)
    yield store
    _close(store)


@pytest.fixture
def jobs(store: Store, clock: Clock) -> JobStore:
    return JobStore(store, now=clock)
