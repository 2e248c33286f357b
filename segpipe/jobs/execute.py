"""job id → spec → runner → stores: the top of the job layer, where a queued job is claimed and run.

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
import logging
import shutil
import time
import traceback as tb

import sqlalchemy.exc

from segpipe import job_kinds
from segpipe.errors import SegpipeError
from segpipe.jobs.kinds import run as run_kind
from segpipe.jobs.run import HandedOff, Heartbeat, JobRun, LeaseLost, Publish
from segpipe.jobs.sharding.coordinate import child_ended
from segpipe.jobs.specs import JobSpec, load_spec
from segpipe.logs import job_context
from segpipe.metrics.definitions import CLAIMS, JOB_DURATION, JOBS_RUN
from segpipe.paths import confined_to
from segpipe.settings import Settings
from segpipe.storage.disk import disk_full_error, is_disk_full
from segpipe.stores import Job, Stores
from segpipe.stores.db_errors import explain

log = logging.getLogger("segpipe.pipeline")


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
            artifacts = run_kind(job.kind, run, spec)
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
            child_ended(stores, job.parent_id, publish)
        _release_memory()


def release_inbox(stores: Stores, job: Job) -> None:
    """An ended interactive predict job's images leave the Label Studio inbox (its predictions stay in
    the store), and so does a box-mask job's image. Shards leave them to their parent, which ends last."""
    if not job_kinds.has(job.kind, job_kinds.INBOX) or job.parent_id is not None:
        return
    try:
        spec = load_spec(job.kind, job.config)
    except Exception:  # noqa: BLE001 - a spec that does not load has no inbox folder to release
        return
    images = spec.input_folder() if isinstance(spec, JobSpec) else None
    if images is None or not str(images) or str(images) == ".":
        return
    inbox = stores.artifacts.inbox.resolve()
    folder = images.resolve()
    if folder != inbox and folder.is_relative_to(inbox):
        shutil.rmtree(folder, ignore_errors=True)


def _reason(exc: BaseException) -> str:
    """One line for an unexpected failure: a database error says which value did not fit."""
    if isinstance(exc, sqlalchemy.exc.StatementError):
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
        import torch  # already loaded by the runners; the worker's entry module does not import it itself

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
