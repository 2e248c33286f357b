from __future__ import annotations

import threading
from contextlib import closing

import numpy as np
import pytest
from pycocotools import mask as mask_util
from sqlalchemy import event, text

from segpipe.stores.db import Store
from segpipe.stores.jobs import JobStore
from segpipe.stores.predictions import PredictionStore

H, W = 32, 48


def _rle(mask: np.ndarray) -> dict:
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))  # counts as bytes, as pycocotools gives


def _rows(n: int, score: float = 0.9) -> list[dict]:
    rows = []
    for i in range(n):
        mask = np.zeros((H, W), np.uint8)
        mask[2 + i : 10 + i, 3 : 12 + i] = 1
        rows.append(
            {
                "category_id": np.int64(7),  # numpy scalars, as a model pipeline would hand them over
                "category_name": "cat",
                "score": np.float32(score - i * 0.1),
                "bbox": np.array([3, 2 + i, 9 + i, 8], np.float32),
                "rle": _rle(mask),
                "height": H,
                "width": W,
            }
        )
    return rows


@pytest.fixture
def predictions(store: Store) -> PredictionStore:
    return PredictionStore(store)


def _finished_job(jobs: JobStore, state: str = "succeeded") -> str:
    job = jobs.create("predict", "cfg", queue="gpu")
    jobs.claim(job.id, "w", 60)
    if state != "running":
        jobs.finish(job.id, "w", state)
    return job.id


def test_an_image_written_twice_is_stored_once(jobs, predictions, clock):
    job_id = _finished_job(jobs, "running")
    assert predictions.write_image(job_id, "img/1.jpg", _rows(3))
    # A re-run that produced different numbers: the first write wins, nothing is added.
    assert not predictions.write_image(job_id, "img/1.jpg", _rows(4, score=0.5))
    assert predictions.count(job_id) == 3
    stored = predictions.for_image("img/1.jpg", job_id=job_id)
    assert [r.instance for r in stored] == [0, 1, 2]
    assert stored[0].score == pytest.approx(0.9) and stored[0].category_id == 7
    assert stored[0].bbox == [3.0, 2.0, 9.0, 8.0]
    assert isinstance(stored[0].rle["counts"], str) and stored[0].rle["size"] == [H, W]
    decoded = mask_util.decode({"size": stored[1].rle["size"], "counts": stored[1].rle["counts"].encode()})
    assert decoded.sum() == 8 * 10 and decoded[3, 3] == 1


def test_racing_writers_of_one_image_store_it_once(jobs, predictions):
    job_id = _finished_job(jobs, "running")
    barrier = threading.Barrier(4)
    outcomes: list[bool] = []

    def write() -> None:
        barrier.wait()
        outcomes.append(predictions.write_image(job_id, "a.png", _rows(5)))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == [False, False, False, True]
    assert predictions.count(job_id) == 5


def test_done_images_includes_images_without_instances(jobs, predictions):
    job_id = _finished_job(jobs, "running")
    other = _finished_job(jobs, "running")
    predictions.write_image(job_id, "a.png", _rows(2))
    predictions.write_image(job_id, "empty.png", [], height=H, width=W)
    predictions.write_image(other, "b.png", _rows(1))
    assert predictions.done_images(job_id) == {"a.png", "empty.png"}
    assert predictions.count_images(job_id) == 2 and predictions.count(job_id) == 2
    assert predictions.for_image("empty.png", job_id=job_id) == []


def test_stored_image_counts_per_job_for_the_jobs_page(jobs, predictions, store):
    from segpipe.stores.prediction_pages import stored_image_counts

    job_id, other, none = (_finished_job(jobs, "running") for _ in range(3))
    predictions.write_image(job_id, "a.png", _rows(2))
    predictions.write_image(job_id, "empty.png", [], height=H, width=W)
    predictions.write_image(other, "b.png", _rows(1))
    assert stored_image_counts(store, [job_id, other, none]) == {job_id: 2, other: 1}
    assert stored_image_counts(store, []) == {}

def test_bad_rows_are_refused_naming_job_and_image(jobs, predictions):
    job_id = _finished_job(jobs, "running")
    with pytest.raises(ValueError, match=r"image 'x.png': unknown prediction fields \['colour'\]"):
        predictions.write_image(job_id, "x.png", [{**_rows(1)[0], "colour": "red"}])
    with pytest.raises(ValueError, match="instance numbers repeat"):
        predictions.write_image(job_id, "x.png", [{**r, "instance": 0} for r in _rows(2)])
    with pytest.raises(ValueError, match="height and width are required"):
        predictions.write_image(job_id, "x.png", [{"score": 0.5}])
    with pytest.raises(ValueError, match="counts must be compressed"):
        predictions.write_image(job_id, "x.png", [{**_rows(1)[0], "rle": {"size": [H, W], "counts": [0, 5]}}])
    assert predictions.done_images(job_id) == set()  # nothing half-written


def test_for_image_without_job_takes_the_latest_succeeded_job(jobs, predictions, clock):
    old = _finished_job(jobs, "running")
    predictions.write_image(old, "k.png", _rows(2))
    jobs.finish(old, "w", "succeeded")
    clock.advance(10)
    new = _finished_job(jobs, "running")
    predictions.write_image(new, "k.png", _rows(3))
    # The newer job still runs: readers keep getting the finished one.
    assert {r.job_id for r in predictions.for_image("k.png")} == {old}
    jobs.finish(new, "w", "succeeded")
    assert [(r.job_id, r.instance) for r in predictions.for_image("k.png")] == [(new, 0), (new, 1), (new, 2)]
    clock.advance(10)
    failed = _finished_job(jobs, "running")
    predictions.write_image(failed, "k.png", _rows(1))
    jobs.finish(failed, "w", "failed")
    assert {r.job_id for r in predictions.for_image("k.png")} == {new}
    clock.advance(10)
    empty = _finished_job(jobs, "running")
    predictions.write_image(empty, "k.png", [], height=H, width=W)
    jobs.finish(empty, "w", "succeeded")
    assert predictions.for_image("k.png") == []  # the latest job found nothing there
    assert predictions.for_image("unknown.png") == []


def test_iter_job_streams_every_row_in_order(jobs, predictions):
    job_id = _finished_job(jobs, "running")
    keys = [f"img_{i:04d}.png" for i in range(300)]
    for key in reversed(keys):
        predictions.write_image(job_id, key, _rows(3))
    other = _finished_job(jobs, "running")
    predictions.write_image(other, keys[0], _rows(1))

    streamed = list(predictions.iter_job(job_id, batch_size=64))
    assert len(streamed) == 900 == predictions.count(job_id)
    assert [(r.image_key, r.instance) for r in streamed] == [(k, i) for k in keys for i in range(3)]
    assert {r.job_id for r in streamed} == {job_id}
    assert streamed[0].to_dict()["rle"]["size"] == [H, W]

    with closing(predictions.iter_job(job_id, batch_size=10)) as rows:
        first = [next(rows) for _ in range(5)]
    assert [r.image_key for r in first] == [keys[0]] * 3 + [keys[1]] * 2
    assert predictions.write_image(job_id, "after.png", _rows(1))  # stopping early released the transaction


@pytest.mark.integration
def test_iter_job_uses_a_server_side_cursor_on_postgresql(pg_store, clock):
    store = pg_store
    jobs, predictions = JobStore(store, now=clock), PredictionStore(store)
    job_id = _finished_job(jobs, "running")
    for i in range(50):
        predictions.write_image(job_id, f"{i:03d}", _rows(2))
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(conn, cursor, statement, *args):
        statements.append(type(cursor).__name__)

    try:
        assert sum(1 for _ in predictions.iter_job(job_id, batch_size=7)) == 100
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert "ServerCursor" in statements


def test_one_image_lookup_is_an_index_search(sqlite_store, clock):
    """The per-image read must not scan the table; checked with SQLite's deterministic planner."""
    store = sqlite_store
    jobs, predictions = JobStore(store, now=clock), PredictionStore(store)
    job_id = _finished_job(jobs)
    predictions.write_image(job_id, "k.png", _rows(2))
    captured: list[tuple[str, object]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, *args):
        if "FROM predictions" in statement:
            captured.append((statement, parameters))

    try:
        predictions.for_image("k.png")
        predictions.for_image("k.png", job_id=job_id)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert len(captured) == 2
    with store.engine.connect() as conn:
        latest, by_job = (
            " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            for sql, params in captured
        )
    for plan in (latest, by_job):
        assert "SCAN" not in plan, plan
        assert "SEARCH predictions USING INDEX sqlite_autoindex_predictions_1 (job_id=? AND image_key=?)" in plan, plan
    assert "SEARCH prediction_images USING INDEX ix_prediction_images_image_key (image_key=?)" in latest
    assert "TEMP B-TREE" not in by_job, by_job  # rows come out of the index in instance order


def test_deleting_a_job_deletes_its_predictions(jobs, predictions, store):
    job_id = _finished_job(jobs)
    predictions.write_image(job_id, "a.png", _rows(2))
    with store.write() as session:
        session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})
    assert predictions.count(job_id) == 0 and predictions.done_images(job_id) == set()


def test_a_batch_of_images_is_one_write_and_skips_the_images_stored_before(jobs, predictions, clock):
    job_id = _finished_job(jobs, "running")
    assert predictions.write_image(job_id, "a", _rows(2))
    new = predictions.write_images(job_id, [("a", _rows(3, score=0.5), None, None), ("b", _rows(1), None, None),
                                            ("c", [], H, W)])
    assert new == 2  # b and c; a was stored before and keeps its first rows
    assert predictions.done_images(job_id) == {"a", "b", "c"}
    assert predictions.count(job_id) == 3
    assert [r.score for r in predictions.for_image("a", job_id=job_id)] == pytest.approx([0.9, 0.8])


def test_the_buffer_writes_every_size_images_and_on_flush(jobs, predictions, clock):
    from segpipe.stores.predictions import PredictionBuffer

    job_id = _finished_job(jobs, "running")
    flushed: list[int] = []
    buffer = PredictionBuffer(predictions, job_id, size=2, max_wait=3600, on_flush=flushed.append)
    buffer.add("1", _rows(1), None, None)
    assert predictions.done_images(job_id) == set() and flushed == []
    buffer.add("2", _rows(1), None, None)
    assert predictions.done_images(job_id) == {"1", "2"} and flushed == [2]
    buffer.add("3", _rows(1), None, None)
    assert buffer.flush() == 1 and flushed == [2, 1] and predictions.count(job_id) == 3
    assert buffer.flush() == 0
