"""A training's run folder kept in the object store while it runs, so another host can resume it.

With a remote artifact root, `CheckpointUpload` uploads the run folder's changed checkpoints and logs
after every epoch (and at the end); `restore_run` brings a run folder that another worker started
into this worker's mirror before training resumes from its ``last.pt``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from segpipe.engine.hooks import Hook
from segpipe.stores.artifacts import ArtifactStore

log = logging.getLogger("segpipe.storage")
SYNCED = ("last.pt", "best.pt", "config.yaml", "categories.json", "metrics.jsonl")


class CheckpointUpload(Hook):
    """Uploads what changed in ``run_dir`` (a job's ``run`` folder in the mirror) after each epoch."""

    def __init__(self, artifacts: ArtifactStore, job_id: str, run_dir: Path) -> None:
        self.artifacts, self.job_id, self.run_dir = artifacts, job_id, run_dir
        self._sent: dict[str, int] = {}

    def after_epoch(self, ctx: object) -> None:
        self.sync()

    def after_train(self, ctx: object) -> None:
        self.sync()

    def sync(self) -> None:
        for name in SYNCED:
            path = self.run_dir / name
            if not path.is_file() or self._sent.get(name) == path.stat().st_mtime_ns:
                continue
            try:
                self.artifacts.upload(self.job_id, self.artifacts.relative(self.job_id, path))
                self._sent[name] = path.stat().st_mtime_ns
            except Exception:  # noqa: BLE001 - an upload that fails now is retried after the next epoch
                log.exception("job %s: could not upload %s", self.job_id, name)


def restore_run(artifacts: ArtifactStore, job_id: str, run_dir: Path) -> bool:
    """Copy the job's uploaded run folder into ``run_dir`` unless this worker already has a ``last.pt``
    there. True when a checkpoint was restored (the training then resumes from it)."""
    if artifacts.remote is None or (run_dir / "last.pt").is_file():
        return False
    if not artifacts.exists(job_id, "run/last.pt"):
        return False
    source = artifacts.fetch(job_id, "run")
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file() and not path.name.startswith(".tags.json"):
            target = run_dir / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    log.info("job %s: run folder restored from %s", job_id, artifacts.remote)
    return True
