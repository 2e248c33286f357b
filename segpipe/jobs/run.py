"""The run machinery of a queued job: what its code sees while it runs (`JobRun`), the lease's heartbeat,
and the two ways a run ends without finishing its row (`LeaseLost`, `HandedOff`).

A job's lease is held by one worker at a time (`segpipe.stores.jobs` claims and renews it); while the job
runs, `Heartbeat` renews it and a lost lease stops the engine at its next step (`JobRun.should_stop`).
The job kinds' runners (`segpipe.jobs.training`, `.prediction`, ...) receive a `JobRun`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from segpipe.errors import SegpipeError
from segpipe.metrics.definitions import IMAGES_PREDICTED
from segpipe.settings import Settings
from segpipe.storage.cache import worker_cache
from segpipe.storage.staging import has_uris, stage_spec
from segpipe.stores import Stores
from segpipe.stores.jobs import jsonable

log = logging.getLogger("segpipe.pipeline")


class LeaseLost(SegpipeError):
    """Another worker owns the job now: stop without touching it."""


class HandedOff(SegpipeError):
    """The job goes on elsewhere (its shards run it); this worker leaves its row as it is."""


S = TypeVar("S", bound=BaseModel)  # a job's spec or config
Publish = Callable[[str, str], None]  # (job id, queue): send a job's message to the queue


@dataclass
class JobRun:
    """What a running job's code can see: its row, its stores, its lease and its stop signals."""

    job_id: str
    kind: str
    owner: str
    stores: Stores
    settings: Settings
    publish: Publish | None = None
    parent_id: str | None = None
    lease_lost: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    _checked_at: float = 0.0
    _last_progress: float = 0.0

    @property
    def folder(self) -> Path:
        return self.stores.artifacts.job_dir(self.job_id, create=True)

    def should_stop(self) -> bool:
        """Polled by the engine between steps; reads the cancel flag at most once a second."""
        if self.lease_lost.is_set():
            return True
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            jobs = self.stores.jobs
            self.cancelled = jobs.is_cancel_requested(self.job_id) or (
                self.parent_id is not None and jobs.is_cancel_requested(self.parent_id))
        return self.cancelled

    def progress(self, values: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= 1.0:
            self._last_progress = now
            self.stores.jobs.update_progress(self.job_id, self.owner, jsonable(values))

    def register(self, name: str, path: Path) -> str:
        return self.stores.artifacts.register(self.job_id, name, path)

    def image_predicted(self, count: int = 1) -> None:
        """Images predicted and stored by this worker (the images/s metric; resumed images are not)."""
        IMAGES_PREDICTED.labels(self.kind).inc(count)


class Heartbeat(threading.Thread):
    def __init__(self, run: JobRun) -> None:
        super().__init__(name=f"heartbeat-{run.job_id}", daemon=True)
        self.run_ = run
        self.stopped = threading.Event()

    def run(self) -> None:
        s = self.run_.settings
        while not self.stopped.wait(s.heartbeat_seconds):
            try:
                if not self.run_.stores.jobs.heartbeat(self.run_.job_id, self.run_.owner, s.lease_seconds):
                    log.warning("job %s: lease lost; stopping", self.run_.job_id)
                    self.run_.lease_lost.set()
                    return
                if self.run_.parent_id is not None:  # a running shard keeps its parent alive
                    self.run_.stores.shards.renew(self.run_.parent_id, s.lease_seconds)
            except Exception:  # a DB hiccup must not kill the job; the lease decides
                log.exception("job %s: heartbeat failed", self.run_.job_id)


def staged(run: JobRun, spec: S) -> S:
    """``spec`` with each object-store URI replaced by this worker's cached copy (`segpipe.storage`)."""
    return stage_spec(spec, worker_cache(run.settings)) if has_uris(spec) else spec


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
