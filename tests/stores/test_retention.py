"""`segpipe gc` (issue 22, point 4): old job files go; what a model version or a live job needs stays.
Through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import URL

from segpipe.jobs.execute import release_inbox
from segpipe.retention import collect
from segpipe.stores import Job, ModelVersion, Stores

REPO = Path(__file__).resolve().parents[2]
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def stores(db_url: str | URL, tmp_path: Path) -> Iterator[Stores]:
    opened = Stores.open(db_url, tmp_path / "artifacts")
    yield opened
    with opened.db.write() as session:  # the PostgreSQL database is the session's: leave it empty
        for table in (ModelVersion, Job):
            session.execute(delete(table))
    opened.close()


def _ended_job(stores: Stores, kind: str, files: list[str], *, config: str = "x: 1\n",
               finished: datetime = LONG_AGO) -> str:
    job = stores.jobs.create(kind, config, "gpu")
    assert stores.jobs.claim(job.id, "w", lease_seconds=60).claimed
    for name in files:
        path = stores.artifacts.path_for(job.id, name)
        path.write_bytes(b"x" * 1000)
        stores.artifacts.register(job.id, Path(name).name, path)
    assert stores.jobs.finish(job.id, "w", "succeeded")
    with stores.db.write() as session:
        session.execute(update(Job).where(Job.id == job.id).values(finished_at=finished))
    return job.id


def test_gc_keeps_what_versions_and_live_jobs_need(stores: Stores, db_url: str | URL, tmp_path: Path) -> None:
    root = stores.artifacts.root
    versioned = _ended_job(stores, "train", ["run/best.pt", "run/last.pt", "run/config.yaml"])
    stores.versions.register("cells", "binary", "{}", checkpoint=f"jobs/{versioned}/run/best.pt", job_id=versioned)
    old_predict = _ended_job(stores, "predict", ["predictions/predictions.json"])
    referenced = _ended_job(stores, "train", ["run/best.pt", "run/last.pt"])
    live = stores.jobs.create("predict", f"model: job:{referenced}\nimages: /x\n", "gpu")
    recent = _ended_job(stores, "predict", ["predictions/predictions.json"], finished=datetime.now(UTC))
    stale_inbox = stores.artifacts.inbox / "abandoned"
    stale_inbox.mkdir(parents=True)
    (stale_inbox / "k.png").write_bytes(b"png")
    os.utime(stale_inbox, (LONG_AGO.timestamp(), LONG_AGO.timestamp()))

    dry = collect(stores, timedelta(days=30), dry_run=True)
    assert sorted(dry.removed) == sorted([f"jobs/{versioned}/run/last.pt", f"jobs/{old_predict}",
                                          "ls-inbox/abandoned"])
    assert (root / "jobs" / old_predict).is_dir()  # a dry run removes nothing

    url = db_url.render_as_string(hide_password=False) if isinstance(db_url, URL) else db_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(SEGPIPE_DATABASE_URL=url, SEGPIPE_ARTIFACT_ROOT=str(root), SEGPIPE_HOME=str(tmp_path / "home"),
               SEGPIPE_RUN_RETENTION_DAYS="30")
    done = subprocess.run([sys.executable, "-m", "segpipe", "gc"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 3 path(s)" in done.stdout and "more than 30 days ago" in done.stdout

    assert not (root / "jobs" / old_predict).exists() and stores.jobs.get(old_predict).artifacts == {}
    assert stores.jobs.get(old_predict).state == "succeeded"  # the row and its story stay
    assert (root / "jobs" / versioned / "run" / "best.pt").is_file()
    assert (root / "jobs" / versioned / "run" / "config.yaml").is_file()
    assert not (root / "jobs" / versioned / "run" / "last.pt").exists()
    assert set(stores.jobs.get(versioned).artifacts) == {"best.pt", "config.yaml"}
    assert (root / "jobs" / referenced / "run" / "last.pt").is_file() and live.state == "queued"
    assert (root / "jobs" / recent).is_dir()
    assert not stale_inbox.exists()


def test_gc_without_a_policy_says_how_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env["SEGPIPE_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "segpipe", "gc"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert "give --older-than DAYS or set SEGPIPE_RUN_RETENTION_DAYS" in done.stdout + done.stderr


def test_an_ended_interactive_job_leaves_the_inbox(stores: Stores) -> None:
    folder = stores.artifacts.inbox / "req1"
    folder.mkdir(parents=True)
    (folder / "k.png").write_bytes(b"png")
    elsewhere = stores.artifacts.root.parent / "data"
    elsewhere.mkdir()
    inbox_job = stores.jobs.create("predict", f"model: m@1\nimages: {folder}\n", "interactive")
    data_job = stores.jobs.create("predict", f"model: m@1\nimages: {elsewhere}\n", "gpu")
    release_inbox(stores, data_job)
    assert elsewhere.is_dir()  # never a folder outside the inbox
    release_inbox(stores, inbox_job)
    assert not folder.exists() and stores.artifacts.inbox.is_dir()
