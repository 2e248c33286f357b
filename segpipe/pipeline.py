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
import shutil
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segpipe import jobkinds
from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobspec import EvaluateSpec, PredictSpec, load_spec, version_ref
from segpipe.logs import job_context
from segpipe.metrics.definitions import CLAIMS, IMAGES_PREDICTED, JOB_DURATION, JOBS_RUN
from segpipe.paths import confined_to
from segpipe.settings import Settings
from segpipe.storage.disk import disk_errors, ensure_free, write_text_atomic
from segpipe.stores import Job, ModelVersion, Stores

log = logging.getLogger("segpipe.pipeline")


class LeaseLost(SegpipeError):
    """Another worker owns the job now: stop without touching it."""


class HandedOff(SegpipeError):
    """The job goes on elsewhere (its shards run it); this worker leaves its row as it is."""


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
            self.stores.jobs.update_progress(self.job_id, self.owner, _jsonable(values))

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
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the job; the lease decides
                log.exception("job %s: heartbeat failed", self.run_.job_id)


def run_job(job_id: str, *, stores: Stores, settings: Settings, owner: str, publish: Publish | None = None) -> str:
    """Claim and run one job; returns its final state, or the claim outcome when it did not run.

    ``publish`` sends a job's message (a predict job queues its shards with it); without it, a
    predict job runs as one shard whatever its size. Counted in the worker's metrics
    (`segpipe.metrics.definitions`); its log lines carry the job id (`segpipe.logs`)."""
    with job_context(job_id):
        claim = stores.jobs.claim(job_id, owner, settings.lease_seconds)
        CLAIMS.labels(claim.outcome.value).inc()
        if not claim.claimed:
            log.info("job %s not run: %s", job_id, claim.outcome.value)
            return claim.outcome.value
        job = claim.job
        assert job is not None, "a claimed job has its row"
        started = time.monotonic()
        outcome = _run_claimed(job, stores=stores, settings=settings, owner=owner, publish=publish)
        JOBS_RUN.labels(job.kind, outcome).inc()
        JOB_DURATION.labels(job.kind, outcome).observe(time.monotonic() - started)
        return outcome


def _run_claimed(job: Job, *, stores: Stores, settings: Settings, owner: str, publish: Publish | None) -> str:
    job_id = job.id
    run = JobRun(job_id, job.kind, owner, stores, settings, publish=publish, parent_id=job.parent_id)
    heartbeat = Heartbeat(run)
    heartbeat.start()
    try:
        spec = load_spec(job.kind, job.config, source=f"job {job_id}")
        # every data file the job reads must lie in the data roots (the Label Studio inbox is one), or be
        # this worker's copy of one
        with confined_to([*settings.roots, settings.cache_dir, stores.artifacts.inbox]):
            artifacts = jobkinds.get(job.kind).run(run, spec)
        if run.lease_lost.is_set():
            raise LeaseLost(f"job {job_id}: lease lost to another worker")
        state = "cancelled" if run.cancelled else "succeeded"
        stores.jobs.finish(job_id, owner, state, artifacts=artifacts)
        release_inbox(stores, job)
        return state
    except HandedOff as e:
        log.info("job %s: %s", job_id, e)
        return "handed-off"
    except LeaseLost:
        log.warning("job %s: another worker owns it now; leaving it", job_id)
        return "lease-lost"
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job, the worker goes on
        reason = str(e) if isinstance(e, SegpipeError) else _reason(e)
        log.error("job %s failed: %s", job_id, reason.splitlines()[0] if reason else type(e).__name__)
        stores.jobs.finish(job_id, owner, "failed", error=reason, traceback=tb.format_exc())
        release_inbox(stores, job)
        return "failed"
    finally:
        heartbeat.stopped.set()
        if job.parent_id is not None:
            from segpipe.sharding.coordinate import child_ended

            child_ended(stores, job.parent_id, publish)
        _release_memory()


def release_inbox(stores: Stores, job: Any) -> None:
    """An ended interactive predict job's images leave the Label Studio inbox (its predictions stay in
    the store), and so does a box-mask job's image. Shards leave them to their parent, which ends last."""
    if job.kind not in ("predict", "box-mask") or job.parent_id is not None:
        return
    try:
        spec = load_spec(job.kind, job.config)
    except Exception:  # noqa: BLE001 - a spec that does not load has no inbox folder to release
        return
    images = Path(str(getattr(spec, "images", ""))) if job.kind == "predict" else Path(str(getattr(spec, "image", ""))).parent
    if not str(images) or str(images) == ".":
        return
    inbox = stores.artifacts.inbox.resolve()
    folder = images.resolve()
    if folder != inbox and folder.is_relative_to(inbox):
        shutil.rmtree(folder, ignore_errors=True)


def _reason(exc: BaseException) -> str:
    """One line for an unexpected failure: a database error says which value did not fit."""
    import sqlalchemy.exc

    from segpipe.storage.disk import disk_full_error, is_disk_full

    if isinstance(exc, sqlalchemy.exc.StatementError):
        from segpipe.stores.db_errors import explain

        return explain(exc)
    if is_disk_full(exc):
        where = getattr(exc, "filename", None)
        return str(disk_full_error(where, None, exc)) if where else f"disk full ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


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


def staged(run: JobRun, spec: Any) -> Any:
    """``spec`` with each object-store URI replaced by this worker's cached copy (`segpipe.storage`)."""
    from segpipe.storage.cache import worker_cache
    from segpipe.storage.staging import has_uris, stage_spec

    return stage_spec(spec, worker_cache(run.settings)) if has_uris(spec) else spec


def run_train(run: JobRun, spec: Any) -> dict[str, str]:
    """A training job: in this worker's process, or — when ``resources`` asks for more than one rank —
    under PyTorch's elastic agent, across the job's nodes (`segpipe.elastic`)."""
    from segpipe.build_checks import check_train_build
    from segpipe.engine.runner import train

    check_train_build(spec)  # what the API's submit-time checks leave to a process with torch
    if spec.resources.world_size > 1:
        from segpipe.elastic.jobs import run_distributed_train

        return run_distributed_train(run, spec)
    spec = staged(run, spec)
    run_dir = run.folder / "run"
    spec.output_dir = run_dir
    resolve_weights_ref(spec, run.stores)
    hooks: tuple[Any, ...] = ()
    if run.stores.artifacts.remote is not None:  # another host may have to resume this training
        from segpipe.storage.run_sync import CheckpointUpload, restore_run

        restore_run(run.stores.artifacts, run.job_id, run_dir)
        hooks = (CheckpointUpload(run.stores.artifacts, run.job_id, run_dir),)
    # force: the engine's progress hook already reports at most once a second plus once per epoch;
    # a second throttle here dropped the epoch-end report that carries the epoch's validation metrics
    # show_progress: plain lines in the worker's log (its stdout is no terminal), a bar on one
    result = train(spec, resume=True, show_progress=True, should_stop=run.should_stop,
                   report=lambda p: run.progress({"phase": "train", **p}, force=True),
                   tracking_tags={"segpipe.job_id": run.job_id}, extra_hooks=hooks)
    return finish_train(run, spec, result, run_dir)


def finish_train(run: JobRun, spec: Any, result: Any, run_dir: Path) -> dict[str, str]:
    """A training's end: its final progress, its model version (a named config, once per job), its artifacts."""
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


def run_retrain(run: JobRun, spec: Any) -> dict[str, str]:
    """The retrain kind (`segpipe.retrain.job`), with its data staged like a training's."""
    from segpipe.retrain.job import run_retrain as retrain

    return retrain(run, staged(run, spec))


def run_artifacts(run: JobRun, run_dir: Path) -> dict[str, str]:
    """Register a training run folder's files (config, metrics, checkpoints, plots) as the job's artifacts."""
    names = ["config.yaml", "categories.json", "metrics.json", "metrics.jsonl", "validation.json", "load_report.json",
             "best.pt", "last.pt"]
    found = {n: run.register(n, run_dir / n) for n in names if (run_dir / n).is_file()}
    for png in sorted((run_dir / "plots").glob("*.png")):
        found[f"plots/{png.name}"] = run.register(f"plots/{png.name}", png)
    for events in sorted(run_dir.glob("events.out.tfevents.*")):  # TensorBoard
        found[f"tensorboard/{events.name}"] = run.register(f"tensorboard/{events.name}", events)
    return found


def run_evaluate(run: JobRun, spec: EvaluateSpec) -> dict[str, str]:
    from segpipe.engine.predict import load_model
    from segpipe.engine.runner import evaluate_checkpoint

    spec = staged(run, spec)
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


def run_predict(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    """A predict job: as one piece, or — when it has more than ``predict.shard_size`` images and a
    queue to publish to — split into shards that any worker takes (`segpipe.sharding`)."""
    from segpipe.sharding.coordinate import coordinate

    if run.publish is not None:
        sharded = coordinate(run, spec)
        if sharded is not None:
            return sharded
    return _predict_whole(run, staged(run, spec))


def _predict_whole(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    """Predict into the store (each image once, also across resumes), then export every format from the
    store through the export registry, so a resumed job's files hold every image exactly once."""
    from segpipe.engine.runner import predict_to_files
    from segpipe.masks.rows import prediction_rows
    from segpipe.stores.predictions import PredictionBuffer

    stores = run.stores
    done = stores.predictions.done_images(run.job_id)
    counts = {"done": len(done), "total": 0, "instances": 0, "shown": 0}
    threshold = spec.predict.score_threshold

    def on_start(todo: int, total: int) -> None:
        counts["total"] = total
        # images_resumed: stored by an earlier attempt of this job, skipped by this one
        run.progress({"phase": "predict", "images_done": total - todo, "images_total": total,
                      "images_resumed": total - todo}, force=True)

    def flushed(images: int) -> None:
        counts["done"] += images
        run.image_predicted(images)
        run.progress({"images_done": counts["done"], "images_total": counts["total"]})

    # one store transaction per batch of images, not per image
    buffer = PredictionBuffer(stores.predictions, run.job_id, size=max(spec.predict.batch_size, 16), on_flush=flushed)

    def on_image(item: Any, pred: Any, category_map: Any) -> None:
        if run.should_stop():
            raise _Stop()
        counts["instances"] += len(pred.instances)
        counts["shown"] += sum(1 for inst in pred.instances if inst.score >= threshold)
        buffer.add(str(item.image_id), prediction_rows(pred, category_map, spec.predict.topk), pred.height, pred.width,
                   uncertainty=pred.uncertainty, fingerprint=pred.meta.get("fingerprint"))

    def on_failed(item: Any, reason: str) -> None:
        record_failed_image(run, run.job_id, str(item.image_id), reason)

    version = resolve_version(spec.model, stores)
    if version is not None:  # which version NAME@production meant when this job ran
        stores.jobs.record_model(run.job_id, version.name, version.version)
        run.progress({"model": f"{version.name}@{version.version}"}, force=True)
    from segpipe.engine.model_cache import cached_model

    model = cached_model(resolve_model_ref(spec.model, stores, version=version), spec.device,
                         capacity=run.settings.model_cache_models)
    out = run.folder / "predictions"
    try:
        predict_to_files(model, spec.images, out, spec.predict,
                         annotations=spec.annotations, device=spec.device, skip=frozenset(done),
                         on_image=on_image, on_start=on_start, on_failed=on_failed, write_files=False)
    except _Stop:
        buffer.flush()
        return {}
    buffer.flush()
    artifacts = export_predictions(run, spec)
    final: dict[str, Any] = {"phase": "done", "images_done": counts["done"], "images_total": counts["total"]}
    warning = nothing_shown_warning(counts["instances"], counts["shown"], threshold, spec.predict.score_floor)
    if warning is not None and not done:  # counted over every image only when this attempt predicted them all
        final["warnings"] = [warning]
    run.progress(final, force=True)
    return artifacts


SHOWN_FAILURES = 100  # failed images listed in a job's progress; summary.json lists them all


def record_failed_image(run: JobRun, job_id: str, image_key: str, reason: str) -> None:
    """An image ``job_id`` (this run, or the parent of this shard) skipped: stored with its reason, and
    counted and listed in this run's progress."""
    stores = run.stores
    stores.predictions.record_failure(job_id, image_key, reason)
    log.warning("job %s: image %s skipped: %s", run.job_id, image_key, reason)
    run.progress({"images_failed": stores.predictions.count_failures(job_id),
                  "failed_images": failed_images(stores, job_id, SHOWN_FAILURES)}, force=True)


def failed_images(stores: Stores, job_id: str, limit: int | None = None) -> list[dict[str, str]]:
    return [{"image": key, "reason": reason} for key, reason in stores.predictions.failures(job_id, limit)]


def nothing_shown_warning(found: int, shown: int, threshold: float, floor: float) -> str | None:
    """The warning a predict job records when its model found instances but none reaches the threshold."""
    if shown or not found:
        return None
    return (f"the model found {found} instance(s) scoring at least {floor:g}, none at or above the score threshold "
            f"{threshold:g}: the exports hold none; export again with a lower --score-threshold "
            "(segpipe masks JOB --score-threshold 0.1) to see them")


def export_predictions(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    """Export every format a predict job asked for from its stored predictions (each image exactly once,
    whichever attempts or shards stored them) and register the files; returns the artifacts, with
    ``summary.json``: images predicted, and every image skipped with its reason (``failed_images``)."""
    from segpipe.job_exports import export_job, job_source
    from segpipe.masks.formats import default_formats

    stores, out = run.stores, run.folder / "predictions"
    failed = failed_images(stores, run.job_id)
    run.progress({"images_failed": len(failed), "failed_images": failed[:SHOWN_FAILURES]}, force=True)
    source = job_source(stores, run.job_id)
    run.progress({"phase": "export"}, force=True)
    # every predict job keeps its COCO results (the record GET /jobs/{id}/results and COCOeval read)
    formats = list(dict.fromkeys(["coco-results", *(spec.predict.formats or default_formats(source.task))]))
    ensure_free(run.folder, 0)  # at least SEGPIPE_MIN_FREE_MB before writing every format
    try:
        with disk_errors(out):
            files = export_job(stores, run.job_id, out, formats, source=source,
                               score_threshold=spec.predict.score_threshold, segmentation=spec.predict.segmentation,
                               image_url_prefix=spec.predict.image_url_prefix)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written export stays behind; a rerun writes them all
        raise
    artifacts: dict[str, str] = {}
    for written in files.values():
        for path in written:
            top = out / path.relative_to(out).parts[0]  # a file, or the folder of per-image files
            if top.name not in artifacts:
                artifacts[top.name] = (run.register(top.name, top) if top.is_file()
                                       else stores.artifacts.register_folder(run.job_id, top))
    summary = {"job_id": run.job_id, "images_predicted": stores.predictions.count_images(run.job_id),
               "images_failed": len(failed), "failed_images": failed, "formats": formats}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    write_text_atomic(path, json.dumps(summary, indent=1))
    artifacts["summary.json"] = run.register("summary.json", path)
    return artifacts


class _Stop(Exception):
    """Raised inside the prediction loop to stop at an image boundary (cancel or lost lease)."""


def resolve_model_ref(ref: str, stores: Stores, *, version: ModelVersion | None = None) -> Path:
    """``job:<id>`` → that training job's run folder; ``NAME@production|latest|N`` → the version's
    checkpoint (``version``, when the caller already resolved it); anything else is a path (already
    confined at submit time)."""
    if ref.startswith("job:"):
        job_id = ref.removeprefix("job:")
        job = stores.jobs.get(job_id)
        if job.kind not in ("train", "retrain"):
            raise ConfigError(f"model {ref}: job {job_id} is a {job.kind} job, not a training job")
        if not stores.artifacts.exists(job_id, "run"):
            raise ConfigError(f"model {ref}: job {job_id} has no checkpoint yet (state {job.state})")
        return stores.artifacts.fetch(job_id, "run")
    version = version or resolve_version(ref, stores)
    if version is not None:
        from segpipe.retrain.job import checkpoint_path

        return checkpoint_path(version, stores)
    return Path(ref)


def resolve_weights_ref(config: Any, stores: Stores) -> None:
    """A config whose ``model.weights`` names a model version (``NAME@production``, ``NAME@3``) or a
    training job (``job:<id>``) starts from that checkpoint: the reference becomes its path, in place."""
    weights = config.model.weights
    if weights and (weights.startswith("job:") or version_ref(weights) is not None):
        path = resolve_model_ref(weights, stores)
        log.info("model.weights %s is %s", weights, path)
        config.model.weights = str(path)


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
