"""What each rank of a queued distributed training runs: ``python -m segpipe.jobs.elastic.rank CONTEXT``.

The elastic agent starts it ``gpus_per_node`` times on every node (RANK, WORLD_SIZE, LOCAL_RANK and
the process group's address in the environment) and starts it again after a failure, so it always
resumes: rank 0 reads the newest checkpoint (its run folder's, or the artifact store's when another
host wrote a newer one) and sends it to every rank (`segpipe.engine.runner.train`).

Rank 0 alone talks to the job: progress into the job's row (as the lease owner), the cancel flag (all
ranks follow its decision), checkpoints and the run folder uploaded to the artifact store, and a
``result.json`` the job's first node reads when the agent ends.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segpipe.jobs.elastic.launch import die_with_parent

log = logging.getLogger("segpipe.elastic")
RESULT = "result.json"


@dataclass(frozen=True)
class RankContext:
    """What the job's worker hands its ranks (a JSON file beside the run folder)."""

    job_id: str  # the training job (progress and cancel)
    owner: str  # its lease owner: progress writes are conditional on it
    config: str  # the resolved job config, YAML
    run_dir: str

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)))
        return path

    @classmethod
    def load(cls, path: Path) -> RankContext:
        return cls(**json.loads(path.read_text()))


class CancelFlag:
    """The job's cancel flag, read from the store at most once a second (rank 0's `should_stop`)."""

    def __init__(self, stores: Any, job_id: str) -> None:
        self.stores, self.job_id = stores, job_id
        self._checked, self._value = 0.0, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._value and now - self._checked >= 1.0:
            self._checked = now
            self._value = self.stores.jobs.is_cancel_requested(self.job_id)
        return self._value


def run_rank(context: RankContext) -> int:
    from segpipe import config as config_mod
    from segpipe.engine.runner import train

    rank = int(os.environ.get("RANK", "0"))
    config = config_mod.from_dict(config_mod.parse_yaml(context.config, source=f"job {context.job_id}",
                                                        aliases=True))
    run_dir = Path(context.run_dir)
    config.output_dir = run_dir
    if rank != 0:
        train(config, resume=True, show_progress=False, should_stop=lambda: False)  # rank 0 decides for all
        return 0

    from segpipe.stores import Stores

    stores = Stores.from_settings()
    hooks: tuple[Any, ...] = ()
    if stores.artifacts.remote is not None:
        from segpipe.jobs.run_sync import CheckpointUpload, pull_newer_checkpoint

        pull_newer_checkpoint(stores.artifacts, context.job_id, run_dir)
        hooks = (CheckpointUpload(stores.artifacts, context.job_id, run_dir),)

    def report(values: dict[str, Any]) -> None:
        from segpipe.stores.jobs import jsonable

        stores.jobs.update_progress(context.job_id, context.owner, jsonable({"phase": "train", **values}))

    result = train(config, resume=True, show_progress=True, report=report,
                   should_stop=CancelFlag(stores, context.job_id), extra_hooks=hooks,
                   tracking_tags={"segpipe.job_id": context.job_id})
    summary = {"state": {**result.state.to_dict(), "stop_reason": result.state.stop_reason},
               "metrics": result.metrics, "tracking": result.tracking}
    (run_dir / RESULT).write_text(json.dumps(summary, default=str))
    if stores.artifacts.remote is not None:
        from segpipe.jobs.run_sync import upload_run

        upload_run(stores.artifacts, context.job_id, run_dir)
    stores.close()
    return 0


def main(argv: list[str]) -> int:
    die_with_parent()  # the agent killed → this rank too
    logging.basicConfig(level="INFO", format=f"%(asctime)s rank {os.environ.get('RANK', '?')} %(levelname)s "
                        "%(name)s: %(message)s")
    log.info("rank %s of %s (local rank %s, restart %s) starts", os.environ.get("RANK"), os.environ.get("WORLD_SIZE"),
             os.environ.get("LOCAL_RANK"), os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return run_rank(RankContext.load(Path(argv[0])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
