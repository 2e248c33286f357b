from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, timedelta

import pytest

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store, make_engine
from segpipe.stores.jobs import ClaimOutcome, ClaimResult, JobStore, one_line

LEASE = 60.0


def test_create_get_and_list(jobs: JobStore, clock):
    first = jobs.create("train", "task: semantic\n", queue="gpu", submitted_by="engineer:ana")
    clock.advance(1)
    second = jobs.create("predict", "task: instance\n", queue="gpu", job_id="celery-task-1")
    clock.advance(1)
    third = jobs.create("train", "task: binary\n", queue="cpu")

    got = jobs.get(first.id)
    assert (got.kind, got.state, got.queue, got.submitted_by) == ("train", "queued", "gpu", "engineer:ana")
    assert got.config == "task: semantic\n" and got.progress == {} and got.artifacts == {} and got.attempts == 0
    assert len(first.id) == 32 and second.id == "celery-task-1"
    assert got.created_at == clock.now - timedelta(seconds=2) and got.created_at.tzinfo is not None

    rows, total = jobs.list()
    assert [r.id for r in rows] == [third.id, second.id, first.id] and total == 3  # newest first
    rows, total = jobs.list(kind="train", limit=1)
    assert [r.id for r in rows] == [third.id] and total == 2
    rows, total = jobs.list(kind="train", limit=1, offset=1)
    assert [r.id for r in rows] == [first.id] and total == 2
    rows, total = jobs.list(state="running")
    assert rows == [] and total == 0


def test_bad_kind_state_and_missing_job_are_clear_errors(jobs: JobStore):
    with pytest.raises(ConfigError, match=r"unknown job kind 'fit'.*train, evaluate, predict, retrain"):
        jobs.create("fit", "", queue="gpu")
    with pytest.raises(ConfigError, match="unknown job state 'done'"):
        jobs.list(state="done")
    with pytest.raises(NotFoundError, match="job nope does not exist"):
        jobs.get("nope")
    assert jobs.find("nope") is None
    jobs.create("train", "", queue="gpu", job_id="taken")
    with pytest.raises(ValueError, match="job taken already exists"):
        jobs.create("predict", "", queue="gpu", job_id="taken")


def test_life_cycle_claim_heartbeat_progress_finish(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    result = jobs.claim(job.id, "host-a:1", LEASE)
    assert result.claimed and result.outcome is ClaimOutcome.CLAIMED
    running = result.job
    assert running.state == "running" and running.lease_owner == "host-a:1" and running.worker == "host-a:1"
    assert running.attempts == 1 and running.started_at == clock.now
    assert running.lease_expires_at == clock.now + timedelta(seconds=LEASE)

    clock.advance(30)
    assert jobs.heartbeat(job.id, "host-a:1", LEASE)
    assert jobs.get(job.id).lease_expires_at == clock.now + timedelta(seconds=LEASE)

    assert jobs.update_progress(job.id, "host-a:1", {"epoch": 1, "epochs": 3, "metrics": {"miou": 0.5}})
    assert jobs.update_progress(job.id, "host-a:1", {"epoch": 2, "step": 7})
    assert jobs.get(job.id).progress == {"epoch": 2, "epochs": 3, "step": 7, "metrics": {"miou": 0.5}}

    jobs.add_artifacts(job.id, {"plot": "plots/loss.png"})
    clock.advance(5)
    assert jobs.finish(job.id, "host-a:1", "succeeded", artifacts={"best": "checkpoints/best.pt"})
    done = jobs.get(job.id)
    assert done.state == "succeeded" and done.terminal and done.finished_at == clock.now
    assert done.artifacts == {"plot": "plots/loss.png", "best": "checkpoints/best.pt"}
    assert done.lease_expires_at is None and done.error is None
    # Finished: no more heartbeats, and a redelivered message finds nothing to do.
    assert not jobs.heartbeat(job.id, "host-a:1", LEASE)
    assert jobs.claim(job.id, "host-b:2", LEASE).outcome is ClaimOutcome.FINISHED


def test_finish_failed_keeps_one_line_error_and_full_traceback(jobs: JobStore):
    job = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(job.id, "w", LEASE)
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nDataError: image 44: unreadable\n'
    assert jobs.finish(job.id, "w", "failed", error=tb, traceback=tb)
    failed = jobs.get(job.id)
    assert failed.state == "failed" and failed.error == "DataError: image 44: unreadable" and failed.traceback == tb
    with pytest.raises(ValueError, match="state must be one of"):
        jobs.finish(job.id, "w", "running")
    assert len(one_line("x" * 2000)) == 500


def test_duplicate_delivery_with_a_live_lease_is_refused(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    assert jobs.claim(job.id, "host-a:1", LEASE).claimed
    clock.advance(LEASE - 1)
    second = jobs.claim(job.id, "host-b:2", LEASE)
    assert not second.claimed and second.outcome is ClaimOutcome.DUPLICATE
    again = jobs.get(job.id)
    assert again.lease_owner == "host-a:1" and again.attempts == 1


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_locked_out(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    first = jobs.claim(job.id, "host-a:1", LEASE).job
    clock.advance(LEASE + 1)
    taken = jobs.claim(job.id, "host-b:2", LEASE)
    assert taken.claimed and taken.outcome is ClaimOutcome.TAKEN_OVER
    assert taken.job.attempts == 2 and taken.job.lease_owner == "host-b:2"
    assert taken.job.started_at == first.started_at  # the first start is kept
    # The old owner wakes up: every write it tries is refused, so it stops.
    assert not jobs.heartbeat(job.id, "host-a:1", LEASE)
    assert not jobs.update_progress(job.id, "host-a:1", {"epoch": 9})
    assert not jobs.finish(job.id, "host-a:1", "succeeded")
    current = jobs.get(job.id)
    assert current.state == "running" and current.progress == {} and current.lease_owner == "host-b:2"


def _race(jobs: JobStore, job_id: str, owners: list[str]) -> list[ClaimResult]:
    barrier = threading.Barrier(len(owners))
    results: list[ClaimResult] = []
    errors: list[BaseException] = []

    def claim(owner: str) -> None:
        barrier.wait()
        try:
            results.append(jobs.claim(job_id, owner, LEASE))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which fails the test
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return results


@pytest.mark.parametrize("expired_first", [False, True], ids=["queued", "expired-lease"])
def test_racing_claimers_exactly_one_wins(jobs: JobStore, clock, expired_first: bool):
    owners = [f"host-{i}:{i}" for i in range(6)]
    for _ in range(3):  # a few rounds: each is a fresh race
        job = jobs.create("train", "cfg", queue="gpu")
        if expired_first:
            jobs.claim(job.id, "dead-worker", LEASE)
            clock.advance(LEASE + 1)
        results = _race(jobs, job.id, owners)
        winners = [r for r in results if r.claimed]
        assert len(results) == len(owners) and len(winners) == 1
        assert {r.outcome for r in results if not r.claimed} == {ClaimOutcome.DUPLICATE}
        final = jobs.get(job.id)
        assert final.lease_owner == winners[0].job.lease_owner
        assert final.attempts == (2 if expired_first else 1)


def test_cancel_a_queued_job_ends_it_at_once(jobs: JobStore, clock):
    job = jobs.create("predict", "cfg", queue="gpu")
    assert jobs.request_cancel(job.id) == "cancelled"
    cancelled = jobs.get(job.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at == clock.now
    assert jobs.is_cancel_requested(job.id)
    assert jobs.claim(job.id, "w", LEASE).outcome is ClaimOutcome.FINISHED


def test_cancel_a_running_job_sets_the_flag_for_its_worker(jobs: JobStore):
    job = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(job.id, "w", LEASE)
    assert not jobs.is_cancel_requested(job.id)
    assert jobs.request_cancel(job.id) == "running"
    assert jobs.is_cancel_requested(job.id) and jobs.get(job.id).state == "running"
    assert jobs.heartbeat(job.id, "w", LEASE)  # still its owner until it stops
    assert jobs.finish(job.id, "w", "cancelled")
    assert jobs.get(job.id).state == "cancelled"
    assert jobs.request_cancel(job.id) == "cancelled"  # finished: left alone


def test_cancel_of_a_finished_or_missing_job(jobs: JobStore):
    job = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(job.id, "w", LEASE)
    jobs.finish(job.id, "w", "succeeded")
    assert jobs.request_cancel(job.id) == "succeeded"
    assert jobs.get(job.id).state == "succeeded"
    with pytest.raises(NotFoundError):
        jobs.request_cancel("missing")
    assert jobs.claim("missing", "w", LEASE).outcome is ClaimOutcome.MISSING


def test_a_cancelled_orphan_is_marked_cancelled_not_rerun(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(job.id, "dead", LEASE)
    jobs.request_cancel(job.id)
    clock.advance(LEASE + 1)
    result = jobs.claim(job.id, "w2", LEASE)
    assert result.outcome is ClaimOutcome.CANCELLED and result.job.state == "cancelled"

    other = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(other.id, "dead", LEASE)
    jobs.request_cancel(other.id)
    clock.advance(LEASE + 1)
    assert not jobs.requeue(other.id)
    assert jobs.get(other.id).state == "cancelled"


def test_reconciler_requeues_expired_running_jobs(jobs: JobStore, clock):
    live = jobs.create("train", "cfg", queue="gpu")
    orphan = jobs.create("train", "cfg", queue="gpu")
    jobs.claim(live.id, "alive", LEASE)
    jobs.claim(orphan.id, "dead", LEASE)
    clock.advance(LEASE / 2)
    assert jobs.heartbeat(live.id, "alive", LEASE)
    clock.advance(LEASE / 2 + 1)
    assert [j.id for j in jobs.expired_running()] == [orphan.id]
    assert jobs.expired_running(now=clock.now - timedelta(seconds=LEASE)) == []

    assert not jobs.requeue(live.id)  # live lease: not an orphan
    assert jobs.requeue(orphan.id)
    requeued = jobs.get(orphan.id)
    assert requeued.state == "queued" and requeued.lease_owner is None and requeued.lease_expires_at is None
    assert not jobs.requeue(orphan.id)  # already queued
    result = jobs.claim(orphan.id, "fresh", LEASE)
    assert result.outcome is ClaimOutcome.CLAIMED and result.job.attempts == 2


def test_claim_gives_up_after_max_attempts(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    for owner in ("w1", "w2"):
        assert jobs.claim(job.id, owner, LEASE, max_attempts=2).claimed
        clock.advance(LEASE + 1)
    result = jobs.claim(job.id, "w3", LEASE, max_attempts=2)
    assert result.outcome is ClaimOutcome.GAVE_UP and not result.claimed
    assert result.job.state == "failed" and "gave up after 2 attempts" in result.job.error


def test_mark_failed(jobs: JobStore):
    job = jobs.create("train", "cfg", queue="gpu")
    assert jobs.mark_failed(job.id, "config invalid:\ndata.train: missing")
    failed = jobs.get(job.id)
    assert failed.state == "failed" and failed.error == "data.train: missing"
    assert failed.traceback == "config invalid:\ndata.train: missing"
    assert not jobs.mark_failed(job.id, "again")
    with pytest.raises(NotFoundError):
        jobs.mark_failed("missing", "x")


def test_times_are_aware_utc(jobs: JobStore, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    claimed = jobs.claim(job.id, "w", LEASE).job
    for value in (claimed.created_at, claimed.started_at, claimed.updated_at, claimed.lease_expires_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert jobs.get(job.id).started_at == clock.now.astimezone(UTC)


def _claim_in_process(url, job_id, owner, barrier, results) -> None:
    """Runs in a forked child: its own engine, as a separate worker process would have."""
    store = Store(make_engine(url))
    try:
        barrier.wait(30)
        results.put((owner, JobStore(store).claim(job_id, owner, LEASE).outcome.value))
    finally:
        store.dispose()


def test_racing_worker_processes_exactly_one_wins(jobs: JobStore, store: Store):
    context = multiprocessing.get_context("fork")  # fast to start: the child inherits the imports
    job = jobs.create("train", "cfg", queue="gpu")
    barrier, results = context.Barrier(3), context.Queue()
    url = store.engine.url.render_as_string(hide_password=False)
    processes = [
        context.Process(target=_claim_in_process, args=(url, job.id, f"proc-{i}", barrier, results)) for i in range(3)
    ]
    for p in processes:
        p.start()
    outcomes = dict(results.get(timeout=60) for _ in processes)
    for p in processes:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(outcomes.values()) == ["claimed", "duplicate", "duplicate"]
    winner = next(owner for owner, outcome in outcomes.items() if outcome == "claimed")
    assert jobs.get(job.id).lease_owner == winner
