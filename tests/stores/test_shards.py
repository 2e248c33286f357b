"""Shard rows and the parent's hand-off, on SQLite and PostgreSQL."""

from __future__ import annotations

from segpipe.stores.jobs import JobStore
from segpipe.stores.shards import SHARDS, ShardStore, shard_id


def _split(jobs: JobStore, shards: ShardStore, n: int = 3):
    parent = jobs.create("predict", "model: m@1\nimages: /x\n", "gpu")
    assert jobs.claim(parent.id, "w1", 30).claimed
    children = shards.create(parent, [f"part: {i}\n" for i in range(n)])
    return parent, children


def test_shards_are_created_once_and_hidden_from_the_default_listing(jobs: JobStore, store, clock) -> None:
    shards = ShardStore(store, now=clock)
    parent, children = _split(jobs, shards)
    assert [c.id for c in children] == [shard_id(parent.id, i) for i in range(3)]
    assert all(c.parent_id == parent.id and c.kind == "predict-shard" and c.state == "queued" for c in children)
    again = shards.create(jobs.get(parent.id), [f"changed: {i}\n" for i in range(3)])  # a parent resumed mid-split
    assert [c.config for c in again] == [c.config for c in children]
    listed, total = jobs.list()
    assert [j.id for j in listed] == [parent.id] and total == 1
    assert jobs.list(kind="predict-shard")[1] == 3


def test_the_parent_goes_back_to_the_queue_once_all_shards_ended(jobs: JobStore, store, clock) -> None:
    shards = ShardStore(store, now=clock)
    parent, children = _split(jobs, shards, n=2)
    assert not shards.hand_off(parent.id, "someone-else", 30)
    assert shards.hand_off(parent.id, "w1", 30)
    assert jobs.get(parent.id).lease_owner == SHARDS and not jobs.heartbeat(parent.id, "w1", 30)
    for i, child in enumerate(children):
        assert not shards.all_finished(parent.id)
        assert jobs.claim(child.id, f"w{i}", 30).claimed
        clock.advance(20)
        assert shards.renew(parent.id, 30)  # a running shard keeps its parent's lease alive
        assert jobs.finish(child.id, f"w{i}", "succeeded")
    assert jobs.expired_running(clock() + __import__("datetime").timedelta(seconds=29)) == []
    assert shards.all_finished(parent.id)
    assert shards.release(parent.id) and not shards.release(parent.id)  # exactly one caller re-publishes
    assert jobs.get(parent.id).state == "queued"
    assert jobs.claim(parent.id, "w9", 30).claimed  # the worker that finishes it


def test_parent_progress_never_goes_backwards(jobs: JobStore, store, clock) -> None:
    shards = ShardStore(store, now=clock)
    parent, _ = _split(jobs, shards)
    shards.hand_off(parent.id, "w1", 30)
    assert shards.advance(parent.id, {"images_done": 120}, monotone=("images_done",))
    assert shards.advance(parent.id, {"images_done": 80, "phase": "predict"}, monotone=("images_done",))
    assert jobs.get(parent.id).progress == {"images_done": 120, "phase": "predict"}
