"""The ``train`` and ``retrain`` job kinds' runners: a training in this worker (or under the elastic agent
across nodes), its model version when the config is named, and its run folder as the job's artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.config import JobConfig
from segpipe.jobs.model_refs import resolve_weights_ref
from segpipe.jobs.run import JobRun, scalars, staged
from segpipe.jobs.versions import completed, hash_for_version, register_run
from segpipe.vocabulary import RunFiles

if TYPE_CHECKING:
    from segpipe.engine.runner import TrainResult


def run_train(run: JobRun, spec: JobConfig) -> dict[str, str]:
    """A training job: in this worker's process, or — when ``resources`` asks for more than one rank —
    under PyTorch's elastic agent, across the job's nodes (`segpipe.jobs.elastic`)."""
    from segpipe.engine.runner import train
    from segpipe.jobs.build_checks import check_train_build

    check_train_build(spec)  # what the API's submit-time checks leave to a process with torch
    if spec.resources.world_size > 1:
        from segpipe.jobs.distributed import run_distributed_train

        return run_distributed_train(run, spec)
    spec = staged(run, spec)
    run_dir = run.folder / "run"
    spec.output_dir = run_dir
    resolve_weights_ref(spec, run.stores)
    hooks: tuple[Any, ...] = ()
    if run.stores.artifacts.remote is not None:  # another host may have to resume this training
        from segpipe.jobs.run_sync import CheckpointUpload, restore_run

        restore_run(run.stores.artifacts, run.job_id, run_dir)
        hooks = (CheckpointUpload(run.stores.artifacts, run.job_id, run_dir),)
    # force: the engine's progress hook already reports at most once a second plus once per epoch;
    # a second throttle here dropped the epoch-end report that carries the epoch's validation metrics
    # show_progress: plain lines in the worker's log (its stdout is no terminal), a bar on one
    result = train(spec, resume=True, show_progress=True, should_stop=run.should_stop,
                   report=lambda p: run.progress({"phase": "train", **p}, force=True),
                   tracking_tags={"segpipe.job_id": run.job_id}, extra_hooks=hooks)
    return finish_train(run, spec, result, run_dir)


def finish_train(run: JobRun, spec: JobConfig, result: TrainResult, run_dir: Path) -> dict[str, str]:
    """A training's end: its final progress, its model version (a named config, once per job), its artifacts."""
    progress: dict[str, Any] = {"phase": "done", "metrics": scalars(result.metrics),
                                "best_epoch": result.state.best_epoch, "epoch": result.state.epoch,
                                "epochs": spec.train.epochs}
    if spec.name and completed(result):  # a named model: every finished training becomes a candidate version of it
        version = register_run(run.stores, run.job_id, spec, result, data_hash=hash_for_version(spec))
        progress["model"] = f"{version.name}@{version.version}"
        if result.tracking:
            from segpipe.tracking import add_tags

            add_tags(result.tracking, {"segpipe.model_version": progress["model"]})
    run.progress(progress, force=True)
    return run_artifacts(run, run_dir)


def run_artifacts(run: JobRun, run_dir: Path) -> dict[str, str]:
    """Register a training run folder's files (config, metrics, checkpoints, plots) as the job's artifacts."""
    found = {n: run.register(n, run_dir / n) for n in RunFiles.ARTIFACTS if (run_dir / n).is_file()}
    for png in sorted((run_dir / "plots").glob("*.png")):
        found[f"plots/{png.name}"] = run.register(f"plots/{png.name}", png)
    for events in sorted(run_dir.glob("events.out.tfevents.*")):  # TensorBoard
        found[f"tensorboard/{events.name}"] = run.register(f"tensorboard/{events.name}", events)
    return found
