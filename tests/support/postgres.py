"""Databases of their own on the test PostgreSQL server.

``SEGPIPE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) is an admin connection:
each use creates a uniquely named database from it and drops it after. A test skips, saying why, only
when that server cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from segpipe.stores.db import normalize_url

PG_ADMIN_URL = os.environ.get("SEGPIPE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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
    """Drop ``url``'s database, closing whatever connections are still open on it."""
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def pg_database() -> Iterator[URL]:
    """A new database for the ``with`` block, dropped when it ends."""
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


# Store-backed fixtures parametrised over both backends: the PostgreSQL case is an integration test.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
