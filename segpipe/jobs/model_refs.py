"""Model references of a job spec → the checkpoint they mean, resolved on the worker that holds the stores.

``job:<id>`` (a training job's run folder), ``NAME@production|latest|N`` (a model version), or a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from segpipe import job_kinds
from segpipe.config import JobConfig
from segpipe.errors import ConfigError
from segpipe.jobs.specs import version_ref
from segpipe.jobs.versions import checkpoint_path
from segpipe.stores import ModelVersion, Stores

if TYPE_CHECKING:
    from segpipe.jobs.run import JobRun

log = logging.getLogger("segpipe.pipeline")


def resolve_model_ref(ref: str, stores: Stores, *, version: ModelVersion | None = None) -> Path:
    """``job:<id>`` → that training job's run folder; ``NAME@production|latest|N`` → the version's
    checkpoint (``version``, when the caller already resolved it); anything else is a path (already
    confined at submit time)."""
    if ref.startswith("job:"):
        job_id = ref.removeprefix("job:")
        job = stores.jobs.get(job_id)
        if not job_kinds.has(job.kind, job_kinds.MODEL):
            raise ConfigError(f"model {ref}: job {job_id} is a {job.kind} job, not a training job")
        if not stores.artifacts.exists(job_id, "run"):
            raise ConfigError(f"model {ref}: job {job_id} has no checkpoint yet (state {job.state})")
        return stores.artifacts.fetch(job_id, "run")
    version = version or resolve_version(ref, stores)
    if version is not None:
        return checkpoint_path(version, stores)
    return Path(ref)


def resolve_weights_ref(config: JobConfig, stores: Stores) -> None:
    """A config whose ``model.weights`` names a model version (``NAME@production``, ``NAME@3``) or a
    training job (``job:<id>``) starts from that checkpoint: the reference becomes its path, in place."""
    weights = config.model.weights
    if weights and (weights.startswith("job:") or version_ref(weights) is not None):
        path = resolve_model_ref(weights, stores)
        log.info("model.weights %s is %s", weights, path)
        config.model.weights = str(path)


def record_version(run: JobRun, ref: str) -> ModelVersion | None:
    """Resolve a ``NAME@production|latest|N`` reference now and record on ``run``'s job which version it
    meant (the row's model name and version, ``progress.model`` = ``NAME@N``, the model version its
    exports name); None, recording nothing, for other references."""
    version = resolve_version(ref, run.stores)
    if version is not None:
        run.stores.jobs.record_model(run.job_id, version.name, version.version)
        run.progress({"model": pinned_ref(version)}, force=True)
    return version


def pinned_ref(version: ModelVersion) -> str:
    """``NAME@N``: the reference that means ``version`` whatever is promoted later."""
    return f"{version.name}@{version.version}"


def resolve_version(ref: str, stores: Stores) -> ModelVersion | None:
    """The `ModelVersion` a ``NAME@production|latest|N`` reference means now; None for other references.
    `ConfigError` when the reference names no existing version."""
    from segpipe.errors import NotFoundError

    parsed = version_ref(ref)
    if parsed is None:
        return None
    name, which = parsed
    try:
        if which == "production":
            version = stores.versions.production(name)
        elif which == "latest":
            version = stores.versions.latest(name)
        else:
            version = stores.versions.get(name, int(which))
    except NotFoundError:
        version = None
    if version is None:
        raise ConfigError(f"model {ref}: no such version (see `segpipe models {name}`)")
    return version
