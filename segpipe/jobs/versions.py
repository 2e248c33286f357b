"""How a finished training becomes a model version, and where a version's files are.

Used by the ``train`` runner (a named config registers a candidate version), the ``retrain`` job
(`segpipe.retrain.job`), model references (`segpipe.jobs.model_refs`) and what shows a version (the API,
the CLI).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe import config as config_mod
from segpipe.config import JobConfig, SourceConfig
from segpipe.data.dataset_hash import dataset_hash
from segpipe.errors import ConfigError, SegpipeError
from segpipe.gate_config import scalar_metrics
from segpipe.stores import ModelVersion, Stores
from segpipe.vocabulary import RunFiles

if TYPE_CHECKING:
    from segpipe.engine.runner import TrainResult

log = logging.getLogger("segpipe.retrain")


def checkpoint_path(version: ModelVersion, stores: Stores) -> Path:
    """The version's checkpoint file (stored relative to the artifact root)."""
    if not version.checkpoint:
        raise ConfigError(f"model {version.name}@{version.version} has no checkpoint")
    path = Path(version.checkpoint)
    if path.is_absolute():
        return path
    return stores.artifacts.fetch_from_root(version.checkpoint)  # downloaded once per version on a remote root


def version_files(version: ModelVersion, stores: Stores) -> dict[str, Any]:
    """What lies beside a version's checkpoint: the load report of the weights it started from (without
    the list of loaded tensor names) and its exports (``segpipe export``), each None / {} when absent."""
    folder = checkpoint_path(version, stores).parent if version.checkpoint else None
    out: dict[str, Any] = {"load_report": None, "exports": {}}
    for key, name in (("load_report", RunFiles.LOAD_REPORT), ("exports", RunFiles.EXPORTS)):
        path = folder / name if folder is not None else None
        if path is not None and path.is_file():
            try:
                out[key] = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                log.warning("model %s@%s: %s unreadable: %s", version.name, version.version, path, e)
    if out["load_report"]:
        out["load_report"].pop("loaded_tensors", None)
    return out


def completed(result: TrainResult) -> bool:
    """Training ran to its end (early stopping counts), rather than being cancelled or losing its lease."""
    reason = result.state.stop_reason
    return reason is None or reason.startswith("early stop")


def register_run(
    stores: Stores,
    job_id: str,
    config: JobConfig,
    result: TrainResult,
    *,
    data_hash: str | None,
    parent: int | None = None,
) -> ModelVersion:
    """The job's model version of ``config.name``: registered as a candidate on the first call, the
    same version on later ones (a resumed job)."""
    existing = stores.versions.for_job(job_id)
    if existing is not None:
        return existing
    if not config.name:
        raise ConfigError(f"job {job_id}: the config has no model name to register a version under")
    checkpoint = result.best_checkpoint or result.last_checkpoint
    return stores.versions.register(
        config.name,
        config.task,
        config_mod.dump(config),
        checkpoint=checkpoint.resolve().relative_to(stores.artifacts.root).as_posix(),
        metrics=scalar_metrics(result.metrics),
        dataset_hash=data_hash,
        parent_version=parent,
        job_id=job_id,
    )


def hash_for_version(config: JobConfig) -> str | None:
    """The content hash of a config's train + val data, or None (logged) when it cannot be computed:
    a finished training is registered either way."""
    try:
        return dataset_hash(dataset_paths(config))
    except (SegpipeError, OSError) as e:
        log.warning("model %s: dataset hash not recorded: %s", config.name, e)
        return None


def dataset_paths(config: JobConfig) -> list[Path]:
    """What a model version's dataset hash covers by default: the files and folders of data.train and data.val."""
    if config.data is None:
        raise ConfigError("the config has no data section")
    sources = [config.data.train, config.data.val]
    return [path for source in sources if source is not None for path in _source_paths(source)]


def _source_paths(source: SourceConfig) -> list[Path]:
    return source.layout_entry().hash_paths(source)
