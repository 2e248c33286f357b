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
from segpipe.vocabulary import RunFiles

log = logging.getLogger("segpipe.storage")
SYNCED = RunFiles.SYNCED


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
            except Exception:  # an upload that fails now is retried after the next epoch
                log.exception("job %s: could not upload %s", self.job_id, name)


def restore_run(artifacts: ArtifactStore, job_id: str, run_dir: Path) -> bool:
    """Copy the job's uploaded run folder into ``run_dir`` unless this worker already has a ``last.pt``
    there. True when a checkpoint was restored (the training then resumes from it)."""
    if artifacts.remote is None or (run_dir / RunFiles.LAST).is_file():
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


def upload_run(artifacts: ArtifactStore, job_id: str, run_dir: Path) -> None:
    """Upload every file of ``run_dir`` (checkpoints, metrics, plots, result) to the remote root."""
    if artifacts.remote is None:
        return
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            artifacts.upload(job_id, artifacts.relative(job_id, path))


def pull_run(artifacts: ArtifactStore, job_id: str, run_dir: Path) -> int:
    """Download every file of the job's remote run folder into ``run_dir``, replacing what is there
    (another host's rank 0 wrote them); returns how many."""
    if artifacts.remote is None:
        return 0
    from segpipe.storage import remote

    base = artifacts.uri(job_id, "run")
    files = remote.files_under(base)
    fs = remote.filesystem(base)
    for relative in files:
        target = run_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file((base / relative).key, str(target))
    return len(files)


def pull_newer_checkpoint(artifacts: ArtifactStore, job_id: str, run_dir: Path) -> bool:
    """Replace ``run_dir/last.pt`` (and best.pt) with the remote ones when those are further on: rank 0
    of a distributed training may run on another host than the rank 0 that wrote the last checkpoint."""
    if artifacts.remote is None or not artifacts.exists(job_id, "run/last.pt"):
        return False
    from segpipe.engine.checkpoint import load_checkpoint
    from segpipe.storage import remote

    base = artifacts.uri(job_id, "run")
    fs = remote.filesystem(base)
    incoming = run_dir / ".last.pt.remote"
    run_dir.mkdir(parents=True, exist_ok=True)
    fs.get_file((base / RunFiles.LAST).key, str(incoming))

    def progress(path: Path) -> tuple[int, int]:
        state = load_checkpoint(path, map_location="cpu").get("train_state", {})
        return int(state.get("step", 0)), int(state.get("epoch", 0))

    local = run_dir / RunFiles.LAST
    if local.is_file() and progress(local) >= progress(incoming):
        incoming.unlink()
        return False
    incoming.replace(local)
    if artifacts.exists(job_id, "run/best.pt"):
        fs.get_file((base / RunFiles.BEST).key, str(run_dir / RunFiles.BEST))
    log.info("job %s: newer checkpoint taken from %s", job_id, artifacts.remote)
    return True
