"""Upgrading a store that holds data keeps every row and every foreign key.

On SQLite, batch migrations rebuild a table (create a copy, DROP the old one, rename). With foreign
keys enforced, that DROP fired the ON DELETE actions of the tables referencing it: upgrading a 0002
store to 0003 deleted all predictions and set model_versions.job_id to NULL. The rows are written
with tables reflected from the database at 0002, so they match that schema, not today's models.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, MetaData, inspect, select, text
from sqlalchemy.engine import URL

from segpipe.stores.db import alembic_config, current_revision, head_revision, make_engine, migrate

OLD_REVISION = "0002"
T0 = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)

# Two jobs, and at least one row pointing at them in every table that references jobs at 0002.
ROWS: dict[str, list[dict[str, Any]]] = {
    "jobs": [
        {"id": job_id, "kind": kind, "config": f"task: {kind}\n", "state": "succeeded", "queue": "gpu",
         "progress": {"step": 3}, "created_at": T0, "updated_at": T0, "cancel_requested": False,
         "attempts": 1, "artifacts": {"log": f"{job_id}/log.txt"}}
        for job_id, kind in (("job-predict", "predict"), ("job-train", "train"))
    ],
    "predictions": [
        {"id": 1, "job_id": "job-predict", "image_key": "a.png", "instance": 0, "category_id": 1,
         "category_name": "cat", "score": 0.9, "bbox": [1, 2, 3, 4], "rle": {"size": [8, 8], "counts": "x"},
         "height": 8, "width": 8},
        {"id": 2, "job_id": "job-predict", "image_key": "b.png", "instance": 0, "height": 8, "width": 8},
    ],
    "prediction_images": [
        {"job_id": "job-predict", "image_key": key, "instances": 1, "height": 8, "width": 8, "created_at": T0}
        for key in ("a.png", "b.png")
    ],
    "model_versions": [
        {"id": 1, "name": "m", "version": 1, "task": "segment", "stage": "production", "config": "{}",
         "metrics": {"iou": 0.5}, "job_id": "job-train", "created_at": T0},
        {"id": 2, "name": "m", "version": 2, "task": "segment", "stage": "candidate", "config": "{}",
         "metrics": {"iou": 0.6}, "parent_version": 1, "job_id": "job-train", "created_at": T0},
    ],
    "retrain_slots": [
        {"name": "m", "job_id": "job-train", "dataset_hash": "h1", "updated_at": T0},
    ],
    "promotion_decisions": [
        {"id": 1, "name": "m", "version": 2, "previous_version": 1, "outcome": "rejected", "source": "gate",
         "reason": "worse", "metric": "iou", "candidate_metrics": {"iou": 0.6}, "checks": [],
         "job_id": "job-train", "decided_by": "beat", "created_at": T0},
    ],
}


def _snapshot(conn: Connection, columns_of: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in ``columns_of``, those columns only, in primary-key order."""
    meta = MetaData()
    meta.reflect(conn, only=list(columns_of))
    snapshot = {}
    for name, columns in columns_of.items():
        table = meta.tables[name]
        order = list(table.primary_key.columns)
        snapshot[name] = [tuple(row) for row in conn.execute(select(*(table.c[c] for c in columns)).order_by(*order))]
    return snapshot


def _foreign_keys(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's foreign keys: (columns, referred table, referred columns, ON DELETE)."""
    insp = inspect(engine)
    return {
        name: sorted(
            (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
             (fk.get("options") or {}).get("ondelete"))
            for fk in insp.get_foreign_keys(name)
        )
        for name in ROWS
    }


def _insert(engine: Engine, rows_of: dict[str, list[dict[str, Any]]]) -> MetaData:
    """Insert rows into the tables as they are now; the reflected tables."""
    meta = MetaData()
    meta.reflect(engine, only=list(ROWS))
    with engine.begin() as conn:
        for name, rows in rows_of.items():
            table = meta.tables[name]
            # Every row names every column, so omitted ones are NULL rather than failing executemany.
            conn.execute(table.insert(), [{c.name: row.get(c.name) for c in table.columns} for row in rows])
    return meta


def _with_migrate(engine: Engine, _url: str | URL) -> None:
    migrate(engine)


def _with_alembic_x_url(_engine: Engine, url: str | URL) -> None:
    """As ``alembic -x url=...`` from a shell would: env.py opens its own connection."""
    cfg = alembic_config()
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    cfg.cmd_opts = argparse.Namespace(x=[f"url={rendered}"])
    command.upgrade(cfg, "head")


@pytest.mark.parametrize("upgrade", [_with_migrate, _with_alembic_x_url], ids=["migrate", "alembic-x-url"])
def test_upgrade_keeps_every_row_and_foreign_key(fresh_db_url, upgrade: Callable[[Engine, str | URL], None]):
    assert migrate(fresh_db_url, OLD_REVISION) == OLD_REVISION
    engine = make_engine(fresh_db_url)
    try:
        meta = _insert(engine, ROWS)
        columns_of = {name: [c.name for c in table.columns] for name, table in meta.tables.items()}
        foreign_keys_before = _foreign_keys(engine)
        with engine.connect() as conn:
            before = _snapshot(conn, columns_of)
        assert all(len(before[name]) == len(rows) for name, rows in ROWS.items())

        upgrade(engine, fresh_db_url)

        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            after = _snapshot(conn, columns_of)
            for name in ROWS:
                assert after[name] == before[name], f"{name}: rows changed by the upgrade"
            assert conn.execute(text("SELECT count(*) FROM jobs WHERE parent_id IS NOT NULL")).scalar() == 0
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # The referencing tables still point at jobs, with their ON DELETE actions.
        foreign_keys_after = _foreign_keys(engine)
        assert {k: v for k, v in foreign_keys_after.items() if k != "jobs"} == {
            k: v for k, v in foreign_keys_before.items() if k != "jobs"
        }
        assert foreign_keys_after["jobs"] == [(("parent_id",), "jobs", ("id",), "CASCADE")]
    finally:
        engine.dispose()


def test_sqlite_upgrade_with_a_dangling_foreign_key_rolls_back(tmp_path):
    """Foreign keys are off while migrating, so ``foreign_key_check`` is what catches a broken reference."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, OLD_REVISION)
    engine = make_engine(url)
    try:
        _insert(engine, {"jobs": ROWS["jobs"]})
        # A plain sqlite3 connection leaves foreign keys off, so it can write a dangling reference.
        with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as raw, raw:
            raw.execute("INSERT INTO retrain_slots (name, job_id, updated_at) VALUES ('m', 'no-such-job', '2026-05-10')")
        with pytest.raises(RuntimeError, match=r"1 foreign-key violation.*retrain_slots"):
            migrate(engine)
        with engine.connect() as conn:
            assert current_revision(conn) == OLD_REVISION  # rolled back: jobs not rebuilt
            assert "parent_id" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # pooled connections: back on
    finally:
        engine.dispose()


def test_sqlite_migrations_refuse_a_connection_with_foreign_keys_on(tmp_path):
    """Running Alembic on a plain connection would rebuild tables with ON DELETE actions armed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(RuntimeError, match="foreign keys off"), engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
