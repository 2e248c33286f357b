"""One shard of a predict job: predict its images into the parent's predictions and folder.

Predictions are stored under the *parent's* job id, so the parent's results, exports and masks are
the union of its shards, and the store's unique key keeps each image exactly once: a shard resumed
after its worker died skips the images already stored, whoever stored them. Once its images are
stored, a shard writes their per-image files (PNG masks, polygons, …) from the store into the parent's
export folder — all of them, also those an earlier attempt stored, so a shard run again rewrites the
same files whole — and the parent's finish writes only the job-level files (COCO results, CVAT,
Label Studio), so it no longer grows with the images. The model is the version the parent pinned when
it split (``NAME@N``, in the shard's spec; recorded on the shard's row and progress too), from the
worker's model cache, so consecutive shards of one job load the checkpoint once.
"""

from __future__ import annotations

import time
from typing import Any

from segpipe.engine.model_cache import cached_model
from segpipe.engine.predict import ImageItem, predict_items
from segpipe.jobs.exports import job_source, listed_files
from segpipe.jobs.model_refs import record_version, resolve_model_ref
from segpipe.jobs.prediction import record_failed_image, write_image_files
from segpipe.jobs.run import JobRun
from segpipe.jobs.sharding.listing import local_items
from segpipe.jobs.specs import ShardSpec
from segpipe.masks.rows import prediction_rows
from segpipe.storage.cache import worker_cache
from segpipe.stores import ModelVersion
from segpipe.stores.predictions import PredictionBuffer


class _Stop(Exception):
    """Cancel requested or lease lost: stop at an image boundary."""


def run_shard(run: JobRun, shard: ShardSpec) -> dict[str, str]:
    stores, spec, parent = run.stores, shard.spec, shard.parent
    version = record_version(run, spec.model)  # the parent pinned it at its split: NAME@N, whoever promotes since
    done = stores.predictions.done_images(parent)
    todo_keys = [it for it in shard.items if str(it[1]) not in done]
    items = shard.items
    todo = local_items(spec.images, todo_keys, worker_cache(run.settings)) if todo_keys else []
    counts = {"done": len(items) - len(todo), "total": len(items)}
    run.progress({"phase": "predict", "shard": shard.index, "images_done": counts["done"],
                  "images_total": counts["total"]}, force=True)
    if todo and not _predict(run, shard, version, todo, counts):
        return {}  # stopped: the shard's next attempt (or nobody, when cancelled) writes its files
    source = job_source(stores, parent, files=listed_files(spec.images, items, todo))
    write_image_files(run, spec, parent, source, [str(image_id) for _, image_id, _ in items])
    return {}


def _predict(run: JobRun, shard: ShardSpec, version: ModelVersion | None, todo: list[ImageItem],
             counts: dict[str, int]) -> bool:
    """Predict ``todo`` into the parent's predictions; False when stopped (cancel, lost lease)."""
    stores, spec, parent = run.stores, shard.spec, shard.parent
    loaded = cached_model(resolve_model_ref(spec.model, stores, version=version), spec.device,
                          capacity=run.settings.model_cache_models)
    cfg = spec.predict
    parent_progress = _ParentProgress(run, parent)

    def on_failed(item: ImageItem, reason: str) -> None:  # recorded under the parent, like the predictions
        record_failed_image(run, parent, str(item.image_id), reason)
        counts["done"] += 1

    def flushed(images: int) -> None:
        counts["done"] += images
        run.image_predicted(images)
        run.progress({"images_done": counts["done"], "images_total": counts["total"]})
        parent_progress.maybe_report()

    # one store transaction per batch of images, not per image (`bench/scale_out.py`)
    buffer = PredictionBuffer(stores.predictions, parent, size=max(cfg.batch_size, 16), on_flush=flushed)
    try:
        for item, _image, pred in predict_items(loaded, todo, cfg, on_failed=on_failed):
            if run.should_stop():
                raise _Stop()
            buffer.add(str(item.image_id), prediction_rows(pred, loaded.category_map, cfg.topk), pred.height, pred.width,
                       uncertainty=pred.uncertainty, fingerprint=pred.meta.get("fingerprint"))
    except _Stop:
        buffer.flush()
        return False
    buffer.flush()
    parent_progress.maybe_report(force=True)
    return True


class _ParentProgress:
    """The parent's images_done, counted in the store (all shards), reported at most once a second."""

    def __init__(self, run: JobRun, parent: str) -> None:
        self.run, self.parent, self.last = run, parent, 0.0

    def maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        stores = self.run.stores
        progress: dict[str, Any] = {"images_done": stores.predictions.count_images(self.parent),
                                    "images_failed": stores.predictions.count_failures(self.parent)}
        stores.shards.advance(self.parent, progress, monotone=("images_done", "images_failed"))
