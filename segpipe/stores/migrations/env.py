"""Alembic environment: runs the migrations on the connection `segpipe.stores.db.migrate` passes in.

``migrate`` hands over a connection with a transaction already open (and the migration lock held);
Alembic then runs every step inside that transaction. Without one (``alembic -x url=...`` from a
shell, an ``alembic.ini`` of your own, or ``--sql`` for an offline script) a URL is used instead, and
online the connection comes from `segpipe.stores.db.migration_connection` too. On SQLite a connection
with foreign keys on is refused: a batch rebuild's DROP would fire the referencing tables' ON DELETE.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from segpipe.stores.models import VERSION_TABLE, Base

config = context.config
OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "version_table": VERSION_TABLE,
    # SQLite can't ALTER most things in place; batch mode rebuilds the table (used by later revisions).
    "render_as_batch": True,
    "compare_type": True,
}


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: call segpipe.stores.db.migrate(url), or pass alembic -x url=...")
    return url


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from segpipe.stores.db import make_engine, migration_connection

    engine = make_engine(_url())
    try:
        with migration_connection(engine) as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # Rebuilding a table (batch mode) would fire the ON DELETE actions of the tables referencing it.
        raise RuntimeError(
            "SQLite migrations must run with foreign keys off, or table rebuilds delete rows elsewhere: "
            "open the connection with segpipe.stores.db.migration_connection (or call migrate)"
        )
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
