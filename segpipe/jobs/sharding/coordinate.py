"""The parent predict job's side of sharding.

A predict job with more than ``predict.shard_size`` images is claimed once to *split* it: its images
are listed once, its model reference resolved once (``NAME@production`` → ``NAME@3``, recorded on the
parent as an unsharded job records it, and written into every shard, so all shards and any re-run of
one use that version whatever is promoted meanwhile), cut into shards (child jobs holding their own
image lists), the parent's lease is
handed to the shards (`ShardStore.hand_off`) and their messages published; the worker then goes on
with the next message. When the last shard ends, the parent is re-queued, and the worker that claims
it *finishes* it: a failure reason naming the failed shards, or the job-level exports from the store
(the shards wrote their own images' per-image files; the image names come from the shards' lists, so
the finish neither lists the image folder again nor re-encodes a mask).

Every step is safe to repeat: shard ids are fixed, so a parent claimed again (its worker died
mid-split, or its lease expired while all shards sat in the queue) creates nothing twice and
re-publishes only the shards still queued (a duplicate message is dropped by its claim).
"""

from __future__ import annotations

import logging

from segpipe.errors import SegpipeError
from segpipe.jobs.model_refs import pinned_ref, record_version
from segpipe.jobs.run import HandedOff, JobRun, LeaseLost, Publish
from segpipe.jobs.specs import PredictSpec, ShardSpec, dump_spec, load_spec
from segpipe.storage.cache import worker_cache
from segpipe.stores import Job, Stores

log = logging.getLogger("segpipe.jobs.sharding")


def coordinate(run: JobRun, spec: PredictSpec) -> dict[str, str] | None:
    """Split, wait for or finish a sharded predict job; None when the job is small enough for one piece.

    Raises `HandedOff` once the shards are on the queue (the parent's row stays running)."""
    stores = run.stores
    children = stores.shards.children(run.job_id)
    if not children:
        children = _split(run, spec)
        if not children:
            return None
    if all(c.terminal for c in children):
        return finish(run, spec, children)
    if not stores.shards.hand_off(run.job_id, run.owner, run.settings.lease_seconds):
        raise LeaseLost(f"job {run.job_id}: lease lost before its shards were queued")
    queued = [c for c in children if c.state == "queued"]
    assert run.publish is not None  # coordinate runs only when there is a queue to publish to
    for child in queued:
        try:
            run.publish(child.id, child.queue)
        except Exception as e:  # noqa: BLE001 - the shard fails with the reason; the parent reports it
            stores.jobs.mark_failed(child.id, f"could not queue the shard: broker unreachable ({type(e).__name__}: {e})")
    # every shard may have ended between our read and the hand-off: then nobody else re-queues us
    child_ended(stores, run.job_id, run.publish)
    raise HandedOff(f"{len(children)} shards, {len(queued)} queued now; the shards' workers run it")


def _split(run: JobRun, spec: PredictSpec) -> list[Job]:
    from segpipe.jobs.sharding.listing import list_items  # torch (the engine's image listing): a split only

    items = list_items(spec, worker_cache(run.settings))
    size = spec.predict.shard_size
    if len(items) <= size or run.should_stop():
        return []
    # the version NAME@production means now, recorded on the parent before any shard exists and written
    # into every shard as NAME@N: a promotion or rollback while the shards run changes none of them
    version = record_version(run, spec.model)
    pinned = spec if version is None else spec.model_copy(update={"model": pinned_ref(version)})
    slices = [items[i : i + size] for i in range(0, len(items), size)]
    configs = [
        dump_spec(ShardSpec(parent=run.job_id, index=i, count=len(slices), spec=pinned,
                            items=part))
        for i, part in enumerate(slices)
    ]
    parent = run.stores.jobs.get(run.job_id)
    children = run.stores.shards.create(parent, configs)
    done = run.stores.predictions.count_images(run.job_id)
    run.progress({"phase": "predict", "images_done": done, "images_total": len(items), "shards": len(children),
                  "shards_done": 0}, force=True)
    log.info("job %s: %d images in %d shards of up to %d", run.job_id, len(items), len(children), size)
    return children


def child_ended(stores: Stores, parent_id: str, publish: Publish | None) -> None:
    """After a shard ends (or a split found them all ended): when every shard of ``parent_id`` has
    ended, put the parent back on the queue once, so a worker finishes it."""
    if publish is None or not stores.shards.all_finished(parent_id):
        return
    if stores.shards.release(parent_id):
        parent = stores.jobs.get(parent_id)
        try:
            publish(parent_id, parent.queue)
        except Exception:  # the reconciler re-publishes queued rows whose lease expired
            log.exception("job %s: all shards ended but its message could not be published", parent_id)


def finish(run: JobRun, spec: PredictSpec, children: list[Job]) -> dict[str, str]:
    """Every shard ended: fail with their reasons, end cancelled, or write the combined exports."""
    stores = run.stores
    failed = [c for c in children if c.state == "failed"]
    done = stores.predictions.count_images(run.job_id)
    run.progress({"images_done": done, "shards_done": len(children)}, force=True)
    if failed:
        first = failed[0]
        raise SegpipeError(
            f"{len(failed)} of {len(children)} shards failed; shard {_index(first)} ({first.id}): {first.error}"
        )
    if any(c.state == "cancelled" for c in children):
        run.cancelled = True
        return {}
    return write_exports(run, spec, children)


def write_exports(run: JobRun, spec: PredictSpec, children: list[Job]) -> dict[str, str]:
    """The job-level formats from the store, as an unsharded job exports them (each image exactly once);
    the per-image files are the shards' (`segpipe.jobs.sharding.runner`)."""
    from segpipe.jobs.exports import job_source, listed_files
    from segpipe.jobs.prediction import export_predictions  # the predict runner imports this module

    items = [item for child in children for item in _shard_spec(child).items]
    source = job_source(run.stores, run.job_id, files=listed_files(spec.images, items))
    artifacts = export_predictions(run, spec, source=source, per_image_written=True)
    shards = len(children)
    done = run.stores.predictions.count_images(run.job_id)
    run.progress({"phase": "done", "images_done": done, "shards": shards, "shards_done": shards}, force=True)
    return artifacts


def _shard_spec(job: Job) -> ShardSpec:
    spec = load_spec(job.kind, job.config, source=f"job {job.id}")
    if not isinstance(spec, ShardSpec):
        raise SegpipeError(f"job {job.id}: its config is not a predict-shard document")
    return spec


def _index(job: Job) -> int:
    return int(job.id.rsplit("-s", 1)[1])
