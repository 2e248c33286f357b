"""Which task kind (instance, semantic, …) a job's predictions come from: it decides how a PNG is drawn.

A predict job's spec names its model, not its task, so the task is looked up from the model
reference the way the worker resolves it: ``job:<id>`` → that training job's config;
``NAME@production|latest|N`` → the model version's task; a path → the ``config.yaml`` saved in the
run folder. Only rows and small YAML files are read, never a checkpoint. The answer for a job is
cached: a job's model reference never changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from segpipe.config import parse_yaml
from segpipe.errors import SegpipeError
from segpipe.job_kinds import MODEL, PREDICTIONS, has
from segpipe.jobs.specs import PredictSpec, load_spec, version_ref
from segpipe.stores import Stores
from segpipe.vocabulary import RunFiles

log = logging.getLogger("segpipe.api")


class JobTasks:
    """``tasks[job_id]``-style lookups with a bounded cache of the answers found (a failed lookup is retried)."""

    def __init__(self, stores: Stores, max_entries: int = 4096) -> None:
        self.stores = stores
        self.max_entries = max_entries
        self._cache: dict[str, str] = {}

    def task_of(self, job_id: str) -> str | None:
        """The task kind behind ``job_id``'s predictions; None when it cannot be told (PNGs are then instance maps)."""
        task = self._cache.get(job_id)
        if task is not None:
            return task
        try:
            task = _lookup(self.stores, job_id)
        except (SegpipeError, OSError, ValueError) as exc:
            log.info("job %s: cannot tell its task (%s); drawing instance maps", job_id, exc)
            return None
        if task is not None:
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))  # oldest first: dicts keep insertion order
            self._cache[job_id] = task
        return task


def _lookup(stores: Stores, job_id: str) -> str | None:
    job = stores.jobs.get(job_id)
    if has(job.kind, MODEL):  # its config names its task
        return _task_of_config_text(job.config)
    if not has(job.kind, PREDICTIONS):
        return None
    spec = load_spec(job.kind, job.config, source=f"job {job_id}")
    if not isinstance(spec, PredictSpec):
        return None
    ref = spec.model
    if ref.startswith("job:"):
        train = stores.jobs.get(ref.removeprefix("job:"))
        return _task_of_config_text(train.config)
    parsed = version_ref(ref)
    if parsed is not None:
        name, which = parsed
        if job.model_version is not None:
            return stores.versions.get(name, job.model_version).task
        version = {"production": stores.versions.production, "latest": stores.versions.latest}.get(which)
        row = version(name) if version else stores.versions.get(name, int(which))
        return row.task if row is not None else None
    path = Path(ref)
    config = (path if path.is_dir() else path.parent) / RunFiles.CONFIG
    return _task_of_config_text(config.read_text()) if config.is_file() else None


def _task_of_config_text(text: str) -> str | None:
    task = parse_yaml(text, aliases=True).get("task")
    return task if isinstance(task, str) else None
