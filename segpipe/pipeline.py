"""job id → spec → engine → stores: the one place that wires a queued job to the library.

Delivery is at-least-once (Redis redelivers unacked messages; the reconciler re-publishes orphans), so
the store decides: `run_job` first *claims* the job — a conditional update that succeeds only for a
queued job or a running one whose lease expired. While it runs, a heartbeat thread renews the lease;
losing it (another worker took over) stops the engine at the next step. Training always resumes from
the job's last checkpoint; prediction skips the images already stored. Failures end the job with a
one-line reason and the traceback; they never escape to the worker, which goes on with the next job.

Kinds: ``train`` (a training whose config has a ``name`` also registers a candidate model version),
``evaluate``, ``predict`` (``NAME@production`` is resolved when it starts, and the version recorded in
its progress) and ``retrain`` (`segpipe.retrain.job`: train, register, evaluate candidate and
production on one validation set, let the promotion gate decide).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobspec import EvaluateSpec, PredictSpec, load_spec, version_ref
from segpipe.settings import Settings
from segpipe.stores import ModelVersion, Stores

log = logging.getLogger("segpipe.pipeline")


class LeaseLost(SegpipeError):
    """Another worker owns the job now: stop without touching it."""


@dataclass
class JobRun:
    """What a running job's code can see: its row, its stores, its lease and its stop signals."""

    job_id: str
    kind: str
    owner: str
    stores: Stores
    settings: Settings
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
            self.cancelled = self.stores.jobs.is_cancel_requested(self.job_id)
        return self.cancelled

    def progress(self, values: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= 1.0:
            self._last_progress = now
            self.stores.jobs.update_progress(self.job_id, self.owner, _jsonable(values))

    def register(self, name: str, path: Path) -> str:
        return self.stores.artifacts.register(self.job_id, name, path)


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
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the job; the lease decides
                log.exception("job %s: heartbeat failed", self.run_.job_id)


def run_job(job_id: str, *, stores: Stores, settings: Settings, owner: str) -> str:
    """Claim and run one job; returns its final state, or the claim outcome when it did not run."""
    claim = stores.jobs.claim(job_id, owner, settings.lease_seconds)
    if not claim.claimed:
        log.info("job %s not run: %s", job_id, claim.outcome.value)
        return claim.outcome.value
    job = claim.job
    run = JobRun(job_id, job.kind, owner, stores, settings)
    heartbeat = Heartbeat(run)
    heartbeat.start()
    try:
        spec = load_spec(job.kind, job.config, source=f"job {job_id}")
        artifacts = RUNNERS[job.kind](run, spec)
        if run.lease_lost.is_set():
            raise LeaseLost(f"job {job_id}: lease lost to another worker")
        state = "cancelled" if run.cancelled else "succeeded"
        stores.jobs.finish(job_id, owner, state, artifacts=artifacts)
        return state
    except LeaseLost:
        log.warning("job %s: another worker owns it now; leaving it", job_id)
        return "lease-lost"
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job, the worker goes on
        reason = str(e) if isinstance(e, SegpipeError) else f"{type(e).__name__}: {e}"
        log.error("job %s failed: %s", job_id, reason.splitlines()[0] if reason else type(e).__name__)
        stores.jobs.finish(job_id, owner, "failed", error=reason, traceback=tb.format_exc())
        return "failed"
    finally:
        heartbeat.stopped.set()
        _release_memory()


def _release_memory() -> None:
    gc.collect()
    # What survives a job (torch, models' modules…) is long-lived: freezing it keeps the next
    # collection from walking ~500k objects again (0.5–0.7 s per job otherwise).
    gc.freeze()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


# ------------------------------------------------------------------------------------------ per kind


def _train(run: JobRun, spec: Any) -> dict[str, str]:
    from segpipe.engine.runner import train

    run_dir = run.folder / "run"
    spec.output_dir = run_dir
    # force: the engine's progress hook already reports at most once a second plus once per epoch;
    # a second throttle here dropped the epoch-end report that carries the epoch's validation metrics
    # show_progress: plain lines in the worker's log (its stdout is no terminal), a bar on one
    result = train(spec, resume=True, show_progress=True, should_stop=run.should_stop,
                   report=lambda p: run.progress({"phase": "train", **p}, force=True),
                   tracking_tags={"segpipe.job_id": run.job_id})
    progress: dict[str, Any] = {"phase": "done", "metrics": _scalars(result.metrics),
                                "best_epoch": result.state.best_epoch, "epoch": result.state.epoch,
                                "epochs": spec.train.epochs}
    if spec.name:
        # A named model: every finished training becomes a candidate version of it.
        from segpipe.retrain.job import completed, hash_for_version, register_run

        if completed(result):
            version = register_run(run.stores, run.job_id, spec, result, data_hash=hash_for_version(spec))
            progress["model"] = f"{version.name}@{version.version}"
            if result.tracking:
                from segpipe.tracking import add_tags

                add_tags(result.tracking, {"segpipe.model_version": progress["model"]})
    run.progress(progress, force=True)
    return run_artifacts(run, run_dir)


def _retrain(run: JobRun, spec: Any) -> dict[str, str]:
    from segpipe.retrain.job import run_retrain

    return run_retrain(run, spec)


def run_artifacts(run: JobRun, run_dir: Path) -> dict[str, str]:
    """Register a training run folder's files (config, metrics, checkpoints, plots) as the job's artifacts."""
    names = ["config.yaml", "categories.json", "metrics.json", "metrics.jsonl", "validation.json", "best.pt", "last.pt"]
    found = {n: run.register(n, run_dir / n) for n in names if (run_dir / n).is_file()}
    for png in sorted((run_dir / "plots").glob("*.png")):
        found[f"plots/{png.name}"] = run.register(f"plots/{png.name}", png)
    for events in sorted(run_dir.glob("events.out.tfevents.*")):  # TensorBoard
        found[f"tensorboard/{events.name}"] = run.register(f"tensorboard/{events.name}", events)
    return found


def _evaluate(run: JobRun, spec: EvaluateSpec) -> dict[str, str]:
    from segpipe.engine.predict import load_model
    from segpipe.engine.runner import evaluate_checkpoint

    ref = resolve_model_ref(spec.model, run.stores)
    loaded = load_model(ref, device="cpu")
    config = loaded.config.model_copy(update={"data": spec.data})
    run.progress({"phase": "evaluate"}, force=True)
    metrics = evaluate_checkpoint(config, ref, split=spec.split, progress=lambda done, total: run.progress(
        {"phase": "evaluate", "images_done": done, "images_total": total}))
    path = run.folder / "metrics.json"
    path.write_text(json.dumps(metrics, indent=1))
    run.progress({"phase": "done", "metrics": _scalars(metrics)}, force=True)
    return {"metrics.json": run.register("metrics.json", path)}


def _predict(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    from segpipe.engine.runner import predict_to_files
    from segpipe.masks.stored import prediction_rows, stream_results_json

    stores = run.stores
    done = stores.predictions.done_images(run.job_id)
    counts = {"done": len(done), "total": 0}

    def on_start(todo: int, total: int) -> None:
        counts["total"] = total
        run.progress({"phase": "predict", "images_done": total - todo, "images_total": total}, force=True)

    def on_image(item: Any, pred: Any, category_map: Any) -> None:
        if run.should_stop():
            raise _Stop()
        stores.predictions.write_image(run.job_id, str(item.image_id), prediction_rows(pred, category_map),
                                       height=pred.height, width=pred.width)
        counts["done"] += 1
        run.progress({"images_done": counts["done"], "images_total": counts["total"]})

    version = resolve_version(spec.model, stores)
    if version is not None:  # which version NAME@production meant when this job ran
        run.progress({"model": f"{version.name}@{version.version}"}, force=True)
    model_path = resolve_model_ref(spec.model, stores, version=version)
    out = run.folder / "predictions"
    files_cfg = spec.predict.model_copy(update={"formats": [f for f in spec.predict.formats if f != "coco"]})
    try:
        predict_to_files(model_path, spec.images, out, files_cfg,
                         annotations=spec.annotations, device=spec.device, skip=frozenset(done),
                         on_image=on_image, on_start=on_start)
    except _Stop:
        return {}
    # COCO results come from the store, so a resumed job's file holds every image exactly once
    results = out / "predictions.json"
    with results.open("wb") as f:
        for chunk in stream_results_json(stores.predictions.iter_job(run.job_id)):
            f.write(chunk)
    run.progress({"phase": "done", "images_done": counts["done"], "images_total": counts["total"]}, force=True)
    artifacts = {"predictions.json": run.register("predictions.json", results)}
    for folder in ("masks", "polygons", "overlays"):
        if (out / folder).is_dir():
            artifacts[folder] = stores.artifacts.relative(run.job_id, out / folder)  # a folder of files
    return artifacts


class _Stop(Exception):
    """Raised inside the prediction loop to stop at an image boundary (cancel or lost lease)."""


RUNNERS = {"train": _train, "evaluate": _evaluate, "predict": _predict, "retrain": _retrain}


def resolve_model_ref(ref: str, stores: Stores, *, version: ModelVersion | None = None) -> Path:
    """``job:<id>`` → that training job's run folder; ``NAME@production|latest|N`` → the version's
    checkpoint (``version``, when the caller already resolved it); anything else is a path (already
    confined at submit time)."""
    if ref.startswith("job:"):
        job_id = ref.removeprefix("job:")
        job = stores.jobs.get(job_id)
        if job.kind not in ("train", "retrain"):
            raise ConfigError(f"model {ref}: job {job_id} is a {job.kind} job, not a training job")
        run_dir = stores.artifacts.job_dir(job_id) / "run"
        if not run_dir.is_dir():
            raise ConfigError(f"model {ref}: job {job_id} has no checkpoint yet (state {job.state})")
        return run_dir
    version = version or resolve_version(ref, stores)
    if version is not None:
        from segpipe.retrain.job import checkpoint_path

        return checkpoint_path(version, stores)
    return Path(ref)


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


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
