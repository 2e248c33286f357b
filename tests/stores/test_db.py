from __future__ import annotations

import sqlite3
import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from segpipe.stores.db import (
    Store,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    migration_connection,
    normalize_url,
)
from segpipe.stores.models import VERSION_TABLE, Base

TABLES = {"jobs", "predictions", "prediction_images", "prediction_failures", "model_versions", "promotion_decisions",
          "retrain_slots", VERSION_TABLE}


def test_migrate_creates_the_schema_and_is_idempotent(fresh_db_url):
    head = head_revision()
    assert head is not None
    assert migrate(fresh_db_url) == head
    assert migrate(fresh_db_url) == head  # second run: nothing to do, no error
    engine = make_engine(fresh_db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            assert current_revision(conn) == head
            # The migrations and the ORM models describe the same schema.
            context = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_migrations_downgrade_to_nothing_and_back(fresh_db_url):
    engine = make_engine(fresh_db_url)
    try:
        migrate(engine)
        with migration_connection(engine) as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not {"jobs", "predictions"} & set(inspect(engine).get_table_names())
        assert migrate(engine) == head_revision()
        assert "jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_two_processes_migrating_at_once_both_succeed(fresh_db_url):
    """Each thread has its own engine, as two starting processes would; the lock lets one migrate."""
    barrier = threading.Barrier(4)
    results: list[object] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(migrate(fresh_db_url))
        except Exception as exc:  # noqa: BLE001 - the main thread asserts on what each thread got
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [head_revision()] * 4


def test_sqlite_engine_is_set_up_for_several_processes(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'dir' / 'x.db'}")  # parent folders created
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_switch_to_wal_waits_for_a_writer_holding_the_reserved_lock(tmp_path):
    """SQLite refuses this switch at once, busy timeout or not; the engine must retry instead.

    It is what several processes opening one new file at once run into: one holds the reserved lock
    while it writes, and another's WAL switch is refused.
    """
    path = tmp_path / "rollback.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")  # still in the default rollback-journal mode
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, writer.execute, args=("COMMIT",))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    finally:
        release.join()
        writer.close()
        engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_up_front(tmp_path):
    path = tmp_path / "lock.db"
    store = Store.from_url(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with store.read() as session:
            session.execute(text("SELECT count(*) FROM jobs"))
            other.execute("BEGIN IMMEDIATE")  # a reader does not hold the write lock
            other.execute("ROLLBACK")
        with store.write() as session:
            session.execute(text("SELECT count(*) FROM jobs"))  # only a read so far, yet the lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        store.dispose()


def test_postgresql_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_in_memory_sqlite_keeps_one_database_across_sessions():
    store = Store.from_url("sqlite://")
    try:
        with store.write() as session:
            session.execute(text("INSERT INTO segpipe_schema_version VALUES ('probe')"))
        with store.read() as session:
            assert "probe" in session.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    finally:
        store.dispose()
