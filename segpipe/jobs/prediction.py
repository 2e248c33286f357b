"""The ``predict`` job kind's runner: predictions into the store (each image once, across resumes and
shards), then every asked-for format exported from the store (`segpipe.jobs.exports`)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segpipe.data.categories import CategoryMap
    from segpipe.engine.predict import ImageItem
    from segpipe.prediction import Prediction

from segpipe.jobs.exports import JobExportSource, export_job, job_source, predict_formats
from segpipe.jobs.model_refs import record_version, resolve_model_ref
from segpipe.jobs.run import JobRun, staged
from segpipe.jobs.sharding.coordinate import coordinate
from segpipe.jobs.specs import PredictSpec
from segpipe.masks.formats import PREDICTION_FORMATS, job_level_formats, per_image_formats
from segpipe.masks.rows import prediction_rows
from segpipe.storage.disk import disk_errors, ensure_free, write_text_atomic
from segpipe.stores import Stores
from segpipe.stores.predictions import PredictionBuffer

log = logging.getLogger("segpipe.pipeline")


def run_predict(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    """A predict job: as one piece, or — when it has more than ``predict.shard_size`` images and a
    queue to publish to — split into shards that any worker takes (`segpipe.jobs.sharding`)."""
    if run.publish is not None:
        sharded = coordinate(run, spec)
        if sharded is not None:
            return sharded
    return _predict_whole(run, staged(run, spec))


def _predict_whole(run: JobRun, spec: PredictSpec) -> dict[str, str]:
    """Predict into the store (each image once, also across resumes), then export every format from the
    store through the export registry, so a resumed job's files hold every image exactly once."""
    from segpipe.engine.runner import predict_to_files  # torch: imported when a predict job runs

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

    def on_image(item: ImageItem, pred: Prediction, category_map: CategoryMap) -> None:
        if run.should_stop():
            raise _Stop()
        counts["instances"] += len(pred.instances)
        counts["shown"] += sum(1 for inst in pred.instances if inst.score >= threshold)
        buffer.add(str(item.image_id), prediction_rows(pred, category_map, spec.predict.topk), pred.height, pred.width,
                   uncertainty=pred.uncertainty, fingerprint=pred.meta.get("fingerprint"))

    def on_failed(item: ImageItem, reason: str) -> None:
        record_failed_image(run, run.job_id, str(item.image_id), reason)

    version = record_version(run, spec.model)  # which version NAME@production meant when this job ran
    from segpipe.engine.model_cache import cached_model  # torch

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


def export_predictions(run: JobRun, spec: PredictSpec, *, source: JobExportSource | None = None,
                       per_image_written: bool = False) -> dict[str, str]:
    """Export every format a predict job asked for from its stored predictions (each image exactly once,
    whichever attempts or shards stored them) and register the files; returns the artifacts, with
    ``summary.json``: images predicted, and every image skipped with its reason (``failed_images``).

    ``per_image_written``: the job's shards already wrote the per-image formats' files (`write_image_files`);
    only the job-level files are written here, the per-image folders registered as they are."""
    stores, out = run.stores, run.folder / "predictions"
    failed = failed_images(stores, run.job_id)
    run.progress({"images_failed": len(failed), "failed_images": failed[:SHOWN_FAILURES]}, force=True)
    source = source or job_source(stores, run.job_id)
    run.progress({"phase": "export"}, force=True)
    formats = predict_formats(spec, source.task)
    writing = job_level_formats(formats) if per_image_written else formats
    ensure_free(run.folder, 0)  # at least SEGPIPE_MIN_FREE_MB before writing every format
    try:
        with disk_errors(out):
            files = export_job(stores, run.job_id, out, writing, source=source,
                               score_threshold=spec.predict.score_threshold, segmentation=spec.predict.segmentation,
                               image_url_prefix=spec.predict.image_url_prefix)
    except BaseException:
        if not per_image_written:  # the shards' files stay: a rerun of this finish writes only its own
            shutil.rmtree(out, ignore_errors=True)  # no half-written export stays behind; a rerun writes them all
        raise
    artifacts: dict[str, str] = {}
    for written in files.values():
        for path in written:
            top = out / path.relative_to(out).parts[0]  # a file, or the folder of per-image files
            if top.name not in artifacts:
                artifacts[top.name] = (run.register(top.name, top) if top.is_file()
                                       else stores.artifacts.register_folder(run.job_id, top))
    predicted = stores.predictions.count_images(run.job_id)
    if per_image_written and predicted:  # the folders the shards wrote (and uploaded), as an unsharded job has them
        for name in per_image_formats(formats):
            for folder in PREDICTION_FORMATS.get(name).folders(source.task):
                artifacts.setdefault(folder, stores.artifacts.relative(run.job_id, out / folder))
    summary = {"job_id": run.job_id, "images_predicted": predicted,
               "images_failed": len(failed), "failed_images": failed, "formats": formats}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    write_text_atomic(path, json.dumps(summary, indent=1))
    artifacts["summary.json"] = run.register("summary.json", path)
    return artifacts


def write_image_files(run: JobRun, spec: PredictSpec, job_id: str, source: JobExportSource,
                      keys: list[str]) -> list[Path]:
    """The per-image formats' files of the images ``keys`` (a shard's), from the store, into
    job ``job_id``'s export folder (and its remote root): the same names and bytes as the whole job's
    export, rewritten whole when a shard runs again. Returns the files written."""
    formats = per_image_formats(predict_formats(spec, source.task))
    if not formats:
        return []
    stores = run.stores
    out = stores.artifacts.job_dir(job_id, create=True) / "predictions"
    ensure_free(out.parent, 0)
    with disk_errors(out):
        files = export_job(stores, job_id, out, formats, source=source, keys=keys,
                           score_threshold=spec.predict.score_threshold, segmentation=spec.predict.segmentation,
                           image_url_prefix=spec.predict.image_url_prefix)
    written = [path for paths in files.values() for path in paths]
    stores.artifacts.upload_files(job_id, written)
    return written


class _Stop(Exception):
    """Raised inside the prediction loop to stop at an image boundary (cancel or lost lease)."""
