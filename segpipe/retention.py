"""Retention of job files: what `segpipe gc` removes, and what it never touches.

A job's files live in ``<artifact root>/jobs/<id>/``; nothing removed them, so every training left its
checkpoints (best and last) forever. The policy (``SEGPIPE_RUN_RETENTION_DAYS``, or ``--older-than``):

- a job that ended (succeeded, failed, cancelled) before the cutoff loses its folder, and its
  ``artifacts`` entries in the store; its row, progress, error and stored predictions stay;
- a job a model version was registered from keeps everything the version needs: only its ``last.pt``
  (the optimizer state, for resuming a training that has ended) goes, when the version's checkpoint
  is another file;
- a job that a queued or running job names (``model: job:<id>``) keeps everything;
- an inbox folder of the Label Studio backend that no live job reads (older than the cutoff) goes.

Running and queued jobs are never touched. Only a local artifact root is collected (for an object
store, use its own lifecycle rules: files there are the originals).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from segpipe.errors import ConfigError
from segpipe.stores import TERMINAL_STATES, Job, ModelVersion, Stores, utcnow
from segpipe.vocabulary import RunFiles


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)  # paths relative to the artifact root
    kept: dict[str, str] = field(default_factory=dict)  # job id → why it was kept
    freed_bytes: int = 0


def collect(stores: Stores, older_than: timedelta, *, dry_run: bool = False, now: datetime | None = None) -> GcReport:
    """Apply the retention policy to jobs that ended more than ``older_than`` ago (see the module docstring)."""
    if stores.artifacts.remote is not None:
        raise ConfigError("segpipe gc collects a local artifact root; the configured root is an object store "
                          "(use the store's lifecycle rules)")
    cutoff = (now or utcnow()) - older_than
    root = stores.artifacts.root
    report = GcReport()
    with stores.db.read() as session:
        ended = session.execute(select(Job.id, Job.kind).where(
            Job.state.in_(TERMINAL_STATES), Job.finished_at < cutoff)).all()
        live_configs = list(session.scalars(select(Job.config).where(Job.state.not_in(TERMINAL_STATES))))
        versions = session.execute(select(ModelVersion.job_id, ModelVersion.checkpoint, ModelVersion.name,
                                          ModelVersion.version)).all()
    needed: dict[str, list[str]] = {}
    for job_id, checkpoint, name, version in versions:
        if job_id is not None:
            needed.setdefault(job_id, []).append(checkpoint or "")
            report.kept.setdefault(job_id, f"model version {name}@{version}")
    for job_id, _kind in ended:
        folder = root / "jobs" / job_id
        if not folder.exists():
            continue
        if any(f"job:{job_id}" in config for config in live_configs):
            report.kept[job_id] = "named by a queued or running job"
            continue
        if job_id in needed:
            last = folder / "run" / RunFiles.LAST
            if last.is_file() and all(Path(c) != last.relative_to(root) for c in needed[job_id]):
                _remove(last, root, report, dry_run)
                if not dry_run:
                    stores.jobs.clear_artifacts(job_id, [RunFiles.LAST])
            continue
        _remove(folder, root, report, dry_run)
        if not dry_run:
            stores.jobs.clear_artifacts(job_id)
    _collect_inbox(stores, cutoff, live_configs, report, dry_run)
    return report


def _collect_inbox(stores: Stores, cutoff: datetime, live_configs: list[str], report: GcReport, dry_run: bool) -> None:
    inbox = stores.artifacts.inbox
    if not inbox.is_dir():
        return
    for folder in sorted(inbox.iterdir()):
        modified = datetime.fromtimestamp(folder.stat().st_mtime, tz=cutoff.tzinfo)
        if modified < cutoff and not any(str(folder) in config for config in live_configs):
            _remove(folder, stores.artifacts.root, report, dry_run)


def _remove(path: Path, root: Path, report: GcReport, dry_run: bool) -> None:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    report.removed.append(path.relative_to(root).as_posix())
    report.freed_bytes += size
    if dry_run:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
