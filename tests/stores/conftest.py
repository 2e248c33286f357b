"""Store fixtures: every store test runs on a SQLite file and on a real PostgreSQL.

PostgreSQL: ``SEGPIPE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) is an
admin connection; the tests create a uniquely named database per session from it and drop it at the
end. The PostgreSQL cases skip, saying why, only when that server cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from segpipe.stores.db import Store, normalize_url
from segpipe.stores.jobs import JobStore
from segpipe.stores.models import Job, ModelVersion, Prediction, PredictionImage, PromotionDecision, RetrainSlot

PG_ADMIN_URL = os.environ.get("SEGPIPE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


class Clock:
    """A settable clock for JobStore: tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _admin_engine() -> Engine:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    return create_engine(normalize_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def create_pg_database() -> URL:
    """A new empty database on the test server (skips the test if the server is unreachable)."""
    admin = _admin_engine()
    name = f"segpipe_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({exc.orig}); set SEGPIPE_TEST_PG_URL")
    finally:
        admin.dispose()
    return normalize_url(PG_ADMIN_URL).set(database=name)


def drop_pg_database(url: URL) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[URL]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


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
    url = create_pg_database()
    yield url
    drop_pg_database(url)


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
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(store: Store, clock: Clock) -> JobStore:
    return JobStore(store, now=clock)
