"""Engines, sessions and schema migrations for the SQL store: a SQLite file or PostgreSQL.

Several processes share one database (API, GPU workers, beat), so:

- SQLite runs in WAL mode (readers never block the writer) with a busy timeout (a writer waits for
  the lock instead of failing) and foreign keys on. pysqlite's own transaction handling is switched
  off and SQLAlchemy emits ``BEGIN`` itself: read transactions are ``BEGIN DEFERRED`` and write
  transactions ``BEGIN IMMEDIATE``, which takes the write lock up front. A deferred transaction that
  reads and then writes can fail with "database is locked" at once, busy timeout or not, when another
  process wrote in between; taking the lock first makes every write transaction simply wait its turn.
  The one step the busy timeout does not cover is the switch of a new (rollback-journal) file to WAL:
  when several connections open a fresh file at once, SQLite answers "database is locked" at once
  rather than risk a deadlock, so that switch is retried for up to the busy timeout.
- PostgreSQL pings pooled connections before use (``pool_pre_ping``), as servers restart and
  proxies drop idle connections.
- `migrate` upgrades to the newest schema inside one transaction that first takes a lock (an
  advisory lock on PostgreSQL, the write lock on SQLite), so two processes starting at once run the
  migrations once; the second one waits, then finds the schema current and does nothing.
  On SQLite that transaction runs with foreign keys off (see `migration_connection`): rebuilding a
  table must not fire the ON DELETE actions of the tables that reference it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Executable,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from segpipe.errors import ServiceUnavailableError
from segpipe.stores.models import VERSION_TABLE

SQLITE_BUSY_TIMEOUT_S = 30.0
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed 64-bit number identifies segpipe's migration lock among other advisory-lock users.
_PG_MIGRATION_LOCK = 0x5E6_91BE_0001
# A custom execution option: the BEGIN mode of a SQLite transaction (DEFERRED, IMMEDIATE, EXCLUSIVE).
SQLITE_BEGIN = "segpipe_sqlite_begin"
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; a bare ``postgresql://`` (or ``postgres://``) uses psycopg 3, the driver we ship."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine configured for sharing the database between processes (see the module docstring).

    A SQLite file's parent folder is created if missing. ``sqlite://`` (in memory) lives in one
    connection shared by all sessions: fine for a quick single-threaded script, not for workers.
    Extra keyword arguments go to `sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, **kwargs)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, **kwargs)
    _dispose_after_fork(engine)
    return engine


def _dispose_after_fork(engine: Engine) -> None:
    """A forked child (Celery prefork, multiprocessing) must not reuse the parent's pooled connections.

    Held weakly: fork hooks cannot be unregistered, and they must not keep old engines alive.
    """
    ref = weakref.ref(engine)

    def _in_child() -> None:
        child_engine = ref()
        if child_engine is not None:
            child_engine.dispose(close=False)

    os.register_at_fork(after_in_child=_in_child)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    if in_memory:
        kwargs.setdefault("poolclass", StaticPool)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite: it would BEGIN lazily (only before DML) and
        # could not begin IMMEDIATE; `_on_begin` below emits BEGIN for every SQLAlchemy transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock that another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not in_memory:
                _switch_to_wal(cursor, SQLITE_BUSY_TIMEOUT_S)
                # In WAL mode NORMAL is still corruption-safe; it only risks the last commits on power loss.
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN}={mode!r}: expected one of {sorted(_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor, timeout_s: float) -> None:
    """Put the database in WAL mode, retrying while another connection holds a conflicting lock.

    Switching a rollback-journal file to WAL reads page 1 and then upgrades to a write lock. If another
    connection holds the reserved lock meanwhile, SQLite returns SQLITE_BUSY without calling the busy
    handler (waiting while holding a read lock could deadlock), so several processes opening one new
    file at once could fail here. Retried with short jittered sleeps until ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + delay_s > deadline:
                raise
        # Jitter keeps the connections that collided from retrying in lockstep.
        time.sleep(delay_s * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not a secret
        delay_s = min(delay_s * 2, 0.1)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose loaded objects stay readable after commit: the stores hand out detached snapshots."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the shipped migrations; ``connection`` (if any) is the one they run on."""
    cfg = Config()
    # Config values go through configparser interpolation, where '%' is special.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(target: str | URL | Engine, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision`` (default: the newest); return the revision now current.

    Idempotent, and safe when several processes call it at once (see the module docstring).
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with migration_connection(engine) as conn:
            # Alembic sees the open transaction and runs every migration inside it.
            command.upgrade(alembic_config(conn), revision)
            return current_revision(conn)
    finally:
        if engine is not target:
            engine.dispose()


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that holds the migration lock: run migrations on it.

    The transaction commits when the block ends and rolls back if it raises. On SQLite, foreign keys
    are off for its duration: a batch migration rebuilds a table (copy, DROP the old, rename), and
    with them on, that DROP would fire the ON DELETE actions of every table referencing it (deleting
    or nulling their rows). SQLite ignores the switch inside a transaction, so it is flipped before
    BEGIN; before COMMIT, ``PRAGMA foreign_key_check`` must come back empty, else it rolls back.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        try:
            if sqlite and _switch_sqlite_foreign_keys(conn, on=False):
                raise RuntimeError("SQLite kept foreign keys on: was a transaction already open?")
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Transaction-scoped: released by the COMMIT that also publishes the new schema.
                    conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
                yield conn
                if sqlite:
                    check_sqlite_foreign_keys(conn)
        finally:
            if sqlite:
                _restore_sqlite_foreign_keys(conn)


def _switch_sqlite_foreign_keys(conn: Connection, *, on: bool) -> bool:
    """Set enforcement on the DBAPI connection itself (through SQLAlchemy it would follow a BEGIN, and be
    ignored); return whether it is on now."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    return bool(driver.execute("PRAGMA foreign_keys").fetchone()[0])


def _restore_sqlite_foreign_keys(conn: Connection) -> None:
    """Foreign keys back on; a connection where that fails is invalidated, so the pool never reuses it."""
    try:
        restored = _switch_sqlite_foreign_keys(conn, on=True)
    except Exception:  # noqa: BLE001 - whatever failed, the connection is dropped instead of reused
        restored = False
    if not restored:
        conn.invalidate()


def check_sqlite_foreign_keys(conn: Connection) -> None:
    """Raise if any row of the SQLite database points at a row that does not exist."""
    violations = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if violations:
        shown = "; ".join(f"{table} rowid {rowid} -> {parent} (key {fk})" for table, rowid, parent, fk in violations[:10])
        raise RuntimeError(f"migration left {len(violations)} foreign-key violation(s), rolled back: {shown}")


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, or None before the first migration."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this segpipe."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def unreachable(url: URL, exc: OperationalError | InterfaceError) -> ServiceUnavailableError:
    """The one-line error for a database that did not answer: its URL (password hidden) and the reason."""
    reason = next((line.strip() for line in str(exc.orig or exc).splitlines() if line.strip()), type(exc).__name__)
    return ServiceUnavailableError(f"cannot reach the database {url.render_as_string(hide_password=True)}: {reason}")


def changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE in ``session``; the number of rows it matched."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


class Store:
    """An engine and its sessions: the one handle the job, prediction and version stores share.

    Thread-safe; make one per process. ``read()`` and ``write()`` each yield a session inside one
    transaction that commits when the block ends and rolls back if it raises.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)

    @classmethod
    def from_url(cls, url: str | URL, *, migrate_schema: bool = True, **engine_kwargs: Any) -> Store:
        """Open the database at ``url``, upgrading its schema first unless ``migrate_schema`` is False.

        Migrating connects at once: then `ServiceUnavailableError` (one line: the URL with its password
        hidden, and the driver's first line of reason) says when the database cannot be reached. Without
        migrating, nothing connects until first use.
        """
        store = cls(make_engine(url, **engine_kwargs))
        if not migrate_schema:
            return store
        try:
            migrate(store.engine)
        except (OperationalError, InterfaceError) as exc:
            store.dispose()
            raise unreachable(store.engine.url, exc) from None
        return store

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction for reading (may also write; on SQLite it takes the write lock only when it does)."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that writes: on SQLite it holds the write lock from its first statement."""
        with self.sessions() as session, session.begin():
            # The first connection() call procures the connection with this option, before BEGIN.
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            yield session

    def dispose(self) -> None:
        """Close all pooled connections (at shutdown, or in tests)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"
