from __future__ import annotations

import threading

import pytest

from segpipe.stores.db import Store
from segpipe.stores.jobs import JobStore
from segpipe.stores.retrain_slots import RetrainSlotStore


@pytest.fixture
def slots(store: Store, clock) -> RetrainSlotStore:
    return RetrainSlotStore(store, now=clock)


def _race(db_url, target, n: int) -> list:
    """``target(slot_store)`` from ``n`` threads at once, each with its own engine (as separate
    processes would have), released together by a barrier."""
    barrier = threading.Barrier(n)
    results: list = []
    lock = threading.Lock()

    def run() -> None:
        store = Store.from_url(db_url, migrate_schema=False)
        try:
            own = RetrainSlotStore(store)
            barrier.wait()
            value = target(own)
        except BaseException as exc:  # noqa: BLE001 - reported below
            value = exc
        finally:
            store.dispose()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [] and len(results) == n
    return results


def test_acquire_queues_one_job_until_it_ends(slots, jobs: JobStore):
    first = slots.acquire("roads", "spec: 1", "gpu", submitted_by="schedule")
    assert first.created and first.job.kind == "retrain" and first.job.state == "queued"
    assert first.job.model_name == "roads" and first.job.submitted_by == "schedule"
    again = slots.acquire("roads", "spec: 2", "gpu")
    assert not again.created and again.job.id == first.job.id
    assert slots.acquire("cells", "spec", "gpu").created  # other names are independent
    assert jobs.claim(first.job.id, "w1", lease_seconds=60).claimed  # running still holds the lock
    assert slots.acquire("roads", "spec", "gpu").job.id == first.job.id
    assert slots.active_job("roads").id == first.job.id
    assert jobs.finish(first.job.id, "w1", "failed", error="boom")
    assert slots.active_job("roads") is None
    after = slots.acquire("roads", "spec: 3", "gpu")
    assert after.created and after.job.id != first.job.id and after.job.config == "spec: 3"
    assert slots.get("roads").job_id == after.job.id
    jobs.request_cancel(after.job.id)  # a cancelled queued job frees the lock too
    assert slots.acquire("roads", "spec", "gpu").created


def test_concurrent_acquires_create_exactly_one_job(db_url, store, jobs):
    # First race: no slot row exists yet (the primary key decides); second: the row exists (FOR UPDATE).
    for _ in range(2):
        results = _race(db_url, lambda s: s.acquire("roads", "spec", "gpu"), 6)
        created = [r for r in results if r.created]
        assert len(created) == 1
        assert {r.job.id for r in results} == {created[0].job.id}
        listed, _ = jobs.list(kind="retrain")
        assert sum(j.state == "queued" for j in listed) == 1
        jobs.request_cancel(created[0].job.id)


def test_claim_check_is_a_compare_and_set(slots, clock):
    assert slots.claim_check("roads", None)  # no row yet: inserted
    first = slots.get("roads").checked_at
    assert first == clock.now
    assert not slots.claim_check("roads", None)  # someone else already checked
    clock.advance(60)
    assert slots.claim_check("roads", first)
    assert not slots.claim_check("roads", first)  # stale: it moved on
    assert slots.get("roads").checked_at == clock.now
    slots.note_check("roads", "sha256:abc", "unchanged")
    slots.note_check("roads", None, "busy")  # None keeps the last hash
    slot = slots.get("roads")
    assert (slot.dataset_hash, slot.note) == ("sha256:abc", "busy")


def test_concurrent_claims_let_one_tick_check(db_url, store, clock):
    slots = RetrainSlotStore(store, now=clock)
    results = _race(db_url, lambda s: s.claim_check("roads", None), 6)
    assert results.count(True) == 1
    seen = slots.get("roads").checked_at
    results = _race(db_url, lambda s: s.claim_check("roads", seen), 6)
    assert results.count(True) == 1


def test_signals_keep_the_first_time_until_a_check_clears_them(slots, clock):
    first = slots.signal("roads")  # creates the row
    assert first.signalled_at == clock.now and first.checked_at is None
    t0 = clock.now
    clock.advance(30)
    assert slots.signal("roads").signalled_at == t0  # later signals fold into the first
    assert slots.claim_check("roads", None)
    assert slots.get("roads").signalled_at is None
    clock.advance(5)
    assert slots.signal("roads").signalled_at == clock.now
