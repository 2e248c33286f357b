"""The schedule tick over real stores and a real broker file, with a settable clock (no worker: the
queued jobs are finished by hand where a test needs that)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from segpipe.data.dataset_hash import dataset_hash
from segpipe.errors import NotFoundError
from segpipe.jobs.specs import RetrainSpec, load_spec
from segpipe.retrain.tick import tick
from segpipe.retrain.trigger import queue_retrain, signal_dataset
from segpipe.service import BrokerUnavailable
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.retrain.conftest import make_data, schedule_for
from workers.celery_app import create_app as create_celery


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data" / "shapes", n_train=3, size=16)


def outcomes(results) -> list[str]:
    return [r.outcome for r in results]


def finish(stores: Stores, job_id: str, state: str = "succeeded") -> None:
    assert stores.jobs.claim(job_id, "w", lease_seconds=60).claimed
    assert stores.jobs.finish(job_id, "w", state)


def edit_a_mask(data: Path) -> None:
    mask = data / "train/masks/s000.png"
    cv2.imwrite(str(mask), np.full((16, 16), 255, np.uint8))


def test_a_tick_queues_only_for_new_data_and_never_twice(stores, celery_app, settings, clock, data, tmp_path):
    schedule = schedule_for(data, tmp_path)
    (first,) = tick(stores, celery_app, settings, schedule)
    assert first.outcome == "queued" and first.dataset_hash == dataset_hash(schedule.get("shapes").dataset_paths)
    job = stores.jobs.get(first.job_id)
    assert (job.kind, job.state, job.queue, job.submitted_by, job.model_name) == (
        "retrain", "queued", "gpu", "schedule", "shapes")
    spec = load_spec("retrain", job.config)
    assert isinstance(spec, RetrainSpec) and spec.trigger == "first check: no production version yet"
    assert spec.dataset[0] == data / "train/images" and spec.gate.metric == "iou"

    assert outcomes(tick(stores, celery_app, settings, schedule)) == ["not-due"]
    clock.advance(3600)
    (busy,) = tick(stores, celery_app, settings, schedule)  # due, but the first job is still queued
    assert busy.outcome == "busy" and busy.job_id == job.id

    # The job trains a version on this data; then an unchanged dataset queues nothing.
    finish(stores, job.id)
    stores.versions.register("shapes", "binary", "cfg", dataset_hash=first.dataset_hash, job_id=job.id)
    clock.advance(3600)
    (same,) = tick(stores, celery_app, settings, schedule)
    assert same.outcome == "unchanged" and same.detail == "unchanged: version 1 (candidate) was trained on this data"
    assert stores.retrain.get("shapes").note == same.detail

    edit_a_mask(data)
    clock.advance(1800)
    assert outcomes(tick(stores, celery_app, settings, schedule)) == ["not-due"]  # half an hour: not yet
    clock.advance(1800)
    (changed,) = tick(stores, celery_app, settings, schedule)
    assert changed.outcome == "queued" and changed.dataset_hash != first.dataset_hash
    assert len(stores.jobs.list(kind="retrain")[0]) == 2


def test_a_burst_of_signals_leads_to_one_check_after_the_debounce(stores, celery_app, settings, clock, data, tmp_path):
    schedule = schedule_for(data, tmp_path, dataset={"name": "shapes-ds"})
    (first,) = tick(stores, celery_app, settings, schedule)
    finish(stores, first.job_id)
    stores.versions.register("shapes", "binary", "cfg", dataset_hash=first.dataset_hash)
    edit_a_mask(data)
    for step in range(3):  # an annotation tool saving three times within 20 s
        clock.advance(10 if step else 0)
        signal_dataset(stores, schedule, "shapes-ds")
    clock.advance(9)
    assert outcomes(tick(stores, celery_app, settings, schedule)) == ["not-due"]  # 29 s after the first
    clock.advance(1)
    (checked,) = tick(stores, celery_app, settings, schedule)
    assert checked.outcome == "queued"
    assert load_spec("retrain", stores.jobs.get(checked.job_id).config).trigger.startswith("dataset signalled")
    assert stores.retrain.get("shapes").signalled_at is None
    assert outcomes(tick(stores, celery_app, settings, schedule)) == ["not-due"]
    with pytest.raises(NotFoundError, match="no schedule watches dataset 'nope'"):
        signal_dataset(stores, schedule, "nope")


def test_overlapping_ticks_check_once(stores, celery_app, settings, clock, data, tmp_path):
    """Two "beat processes" (threads with their own connections) tick at the same moment."""
    schedule = schedule_for(data, tmp_path)
    barrier = threading.Barrier(2)
    results = []

    def beat() -> None:
        own = Stores.open(settings.db_url, settings.artifacts, now=clock)
        try:
            barrier.wait()
            results.extend(tick(own, create_celery(settings), settings, schedule))
        finally:
            own.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes(results)) in (["not-due", "queued"], ["queued", "taken"])
    assert len(stores.jobs.list(kind="retrain")[0]) == 1


def test_one_broken_model_does_not_stop_the_others(stores, celery_app, settings, data, tmp_path):
    schedule = schedule_for(data, tmp_path)
    broken = schedule_for(data, tmp_path, dataset={"paths": [str(tmp_path / "data" / "gone")]}).get("shapes")
    schedule.models["broken"] = type(broken)(**{**broken.__dict__, "name": "broken"})
    results = {r.name: r for r in tick(stores, celery_app, settings, schedule)}
    assert results["shapes"].outcome == "queued"
    assert results["broken"].outcome == "failed" and "gone: dataset path does not exist" in results["broken"].detail
    assert stores.retrain.get("broken").note.startswith("check failed:")


def test_a_refused_message_fails_the_job_and_frees_the_lock(stores, data, tmp_path):
    settings = Settings(home=tmp_path / "home", data_roots=[tmp_path / "data"], artifact_root=tmp_path / "artifacts",
                        broker_url="redis://127.0.0.1:1/0")
    app = create_celery(settings)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    entry = schedule_for(data, tmp_path).get("shapes")
    with pytest.raises(BrokerUnavailable, match="the broker did not accept it"):
        queue_retrain(stores, app, settings, entry, trigger="test")
    (job,), _ = stores.jobs.list(kind="retrain")
    assert job.state == "failed" and "broker unreachable" in job.error
    assert stores.retrain.active_job("shapes") is None


def test_paths_outside_the_data_roots_are_refused(stores, celery_app, data, tmp_path):
    settings = Settings(home=tmp_path / "home", data_roots=[tmp_path / "elsewhere"], artifact_root=tmp_path / "a",
                        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    entry = schedule_for(data, tmp_path).get("shapes")
    with pytest.raises(Exception, match="outside the allowed data roots"):
        queue_retrain(stores, celery_app, settings, entry, trigger="test")
    assert stores.jobs.list(kind="retrain")[0] == []


def test_a_signal_while_a_retraining_runs_is_kept_for_after_it(stores, celery_app, settings, clock, data, tmp_path):
    """Annotators go on saving while a retraining runs: their signal must not be spent on the "busy" check
    (the running job trains on the older data), or the new annotations wait for the next scheduled check."""
    schedule = schedule_for(data, tmp_path, dataset={"name": "shapes-ds"})
    (first,) = tick(stores, celery_app, settings, schedule)
    edit_a_mask(data)
    signal_dataset(stores, schedule, "shapes-ds")
    clock.advance(30)
    (busy,) = tick(stores, celery_app, settings, schedule)
    assert busy.outcome == "busy" and "the dataset signal waits for it" in busy.detail
    assert stores.retrain.get("shapes").signalled_at is not None
    finish(stores, first.job_id)
    stores.versions.register("shapes", "binary", "cfg", dataset_hash=first.dataset_hash, job_id=first.job_id)
    clock.advance(30)
    (after,) = tick(stores, celery_app, settings, schedule)
    assert after.outcome == "queued" and after.dataset_hash != first.dataset_hash
    assert load_spec("retrain", stores.jobs.get(after.job_id).config).trigger.startswith("dataset signalled")
