"""Scheduled retraining end to end: a real Redis broker, a real worker process, real training and
evaluation; only the schedule's clock is the test's (the ticks run here, with a settable "now").

The story, on tiny 32-px shapes (binary U-Net, a few epochs on a CPU):

1. A training job over HTTP, on masks an annotator left empty, registers shapes@1; it is promoted by
   hand. Its foreground IoU on the validation set is ~0: it learnt to find nothing.
2. A tick on the unchanged dataset queues nothing (shapes@1 was trained on exactly this content).
3. The masks are fixed. Two beat processes tick at the same moment: exactly one retrain job is queued,
   and a later tick while it runs queues no second one.
4. The worker fine-tunes shapes@2 from shapes@1, evaluates both on the fixed validation set and
   promotes it (IoU up by far more than min_delta). A predict job for shapes@production uses v2.
5. The masks are emptied again (one stray pixel makes them new content); a signal from the annotation
   tool, after the debounce window, queues a retraining from scratch: shapes@3 finds nothing, and the
   gate rejects it with the numbers.
6. Rollback: shapes@1, the production version before shapes@2, is production again, and the next
   predict job for shapes@production follows it.

The outcomes are certain, not lucky: a model trained on empty masks predicts no foreground (IoU ~0),
one fine-tuned on the real masks finds some: IoU 0.0019 → 0.3528 here, against min_delta 0.05 (the
runs are seeded, so the numbers repeat on a CPU).
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from segpipe.data.dataset_hash import dataset_hash
from segpipe.data.synthetic import make_mask_folders
from segpipe.jobs.specs import load_spec
from segpipe.retrain.promotion import promote_by_hand, rollback
from segpipe.retrain.schedule import load_schedule
from segpipe.retrain.tick import tick
from segpipe.retrain.trigger import signal_dataset
from segpipe.stores import Stores
from tests.integration.beat_process import tick_once
from tests.integration.conftest import UNET_TINY, Service, predict_spec
from tests.support.clock import Clock

pytestmark = pytest.mark.integration
SIZE = 32


def training_config(data: Path) -> dict[str, Any]:
    return {
        "task": "binary",
        "data": {
            "train": {"images": str(data / "train/images"), "masks": str(data / "train/masks")},
            "val": {"images": str(data / "val/images"), "masks": str(data / "val/masks")},
            "foreground_value": 255,
            "num_workers": 0,
        },
        "augment": {"preset": "none"},
        "model": dict(UNET_TINY),
        "train": {"device": "cpu", "seed": 0, "epochs": 6, "batch_size": 4, "lr": 3e-3, "image_size": SIZE,
                  "scheduler": "none", "amp": "off"},
    }


def write_schedule(path: Path, data: Path, *, fine_tune: bool) -> Path:
    schedule = {
        "debounce_seconds": 60,
        "models": {"shapes": {
            "every": "1h",
            "config": training_config(data),
            "dataset": {"name": "shapes-annotations"},
            "fine_tune_from_production": fine_tune,
            "gate": {"metric": "iou", "mode": "max", "min_delta": 0.05, "guards": {"dice": 0.05}},
        }},
    }
    path.write_text(yaml.safe_dump(schedule))
    return path


def set_masks(masks: Path, source: Path | None, stray_pixel: bool = False) -> None:
    """Copy the real masks from ``source``, or (None) make every mask empty, optionally but for one pixel."""
    for mask in sorted(masks.glob("*.png")):
        if source is not None:
            shutil.copy(source / mask.name, mask)
            continue
        empty = np.zeros((SIZE, SIZE), np.uint8)
        if stray_pixel and mask.name == "s000.png":
            empty[0, 0] = 255
        cv2.imwrite(str(mask), empty)


def retrain_jobs(stores: Stores) -> list[Any]:
    return stores.jobs.list(kind="retrain", limit=100)[0]


def ticks_from_two_processes(svc: Service, schedule: Path, now: datetime) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=tick_once, args=(svc.settings, str(schedule), now.isoformat(), barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    out = [row for _ in procs for row in results.get(timeout=180)]
    for p in procs:
        p.join(timeout=60)
    return out


@pytest.fixture
def clock() -> Clock:
    """The schedule's "now": starts at the real time (the store's rows carry real times), moves only
    when the test says."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def stores(svc: Service, clock: Clock) -> Iterator[Stores]:
    """The service's store, opened with the test's clock (what a beat process would use)."""
    opened = Stores.open(svc.settings.db_url, svc.settings.artifacts, now=clock)
    yield opened
    opened.close()


@pytest.mark.parametrize("service", ["sqlite", "postgresql"], indirect=True)
def test_scheduled_retraining_promotes_rejects_and_rolls_back(svc: Service, stores: Stores, clock: Clock) -> None:
    root = svc.data_dir("retrain")
    data = root / "shapes"
    make_mask_folders(data / "train", n_images=8, size=(SIZE, SIZE), binary=True, seed=1)
    make_mask_folders(data / "val", n_images=6, size=(SIZE, SIZE), binary=True, seed=2)
    shutil.copytree(data / "train/masks", root / "real_masks")
    set_masks(data / "train/masks", None)
    schedule_path = write_schedule(root / "schedule.yaml", data, fine_tune=True)
    settings, celery = svc.settings, svc.celery

    # 1. shapes@1: a training job with a model name, on empty masks; promoted by hand.
    train_id = svc.submit("train", {**training_config(data), "name": "shapes"})
    assert svc.wait_done(train_id)["progress"]["model"] == "shapes@1"
    v1 = stores.versions.get("shapes", 1)
    assert (v1.stage, v1.job_id, v1.metrics["iou"] < 0.05) == ("candidate", train_id, True)
    promote_by_hand(stores, "shapes", 1, by="test")

    # 2. Unchanged data: no job.
    (unchanged,) = tick(stores, celery, settings, load_schedule(schedule_path))
    assert unchanged.outcome == "unchanged" and unchanged.dataset_hash == v1.dataset_hash
    assert retrain_jobs(stores) == []

    # 3. Fixed annotations; two beat processes tick at once: one job.
    set_masks(data / "train/masks", root / "real_masks")
    results = ticks_from_two_processes(svc, schedule_path, clock.advance(hours=1, seconds=1))
    assert sorted(r["outcome"] for r in results) in (["not-due", "queued"], ["queued", "taken"]), results
    (job,) = retrain_jobs(stores)
    assert next(r for r in results if r["outcome"] == "queued")["job_id"] == job.id
    clock.advance(hours=1, seconds=1)
    (busy,) = tick(stores, celery, settings, load_schedule(schedule_path))
    assert busy.outcome == "busy" and busy.job_id == job.id
    assert len(retrain_jobs(stores)) == 1

    # 4. The worker trains shapes@2 from shapes@1 and the gate promotes it.
    done = svc.wait_done(job.id)
    assert (done["progress"]["model"], done["progress"]["decision"]) == ("shapes@2", "promoted")
    v2 = stores.versions.get("shapes", 2)
    assert (v2.stage, v2.parent_version, v2.job_id) == ("production", 1, job.id)
    assert v2.dataset_hash == dataset_hash(load_spec("retrain", job.config).dataset, cache=None)
    assert yaml.safe_load(v2.config)["model"]["weights"].endswith(f"jobs/{train_id}/run/best.pt")
    d2 = stores.decisions.for_version("shapes", 2)
    assert (d2.outcome, d2.source, d2.previous_version, d2.job_id) == ("promoted", "gate", 1, job.id)
    assert d2.candidate_metrics["iou"] >= d2.production_metrics["iou"] + 0.05, d2.reason
    assert d2.reason.startswith("iou ") and "≥ min_delta +0.0500" in d2.reason
    predict_v2 = svc.submit("predict", predict_spec("shapes@production", data / "val/images"))
    assert svc.wait_done(predict_v2)["progress"]["model"] == "shapes@2"

    # 5. Empty masks again (new content: one stray pixel); the annotation tool signals; retrain from scratch.
    write_schedule(schedule_path, data, fine_tune=False)
    set_masks(data / "train/masks", None, stray_pixel=True)
    schedule = load_schedule(schedule_path)
    for _ in range(3):
        signal_dataset(stores, schedule, "shapes-annotations")
        clock.advance(seconds=5)
    assert [r.outcome for r in tick(stores, celery, settings, schedule)] == ["not-due"]  # inside the window
    clock.advance(seconds=50)
    (queued,) = tick(stores, celery, settings, schedule)
    assert queued.outcome == "queued" and queued.detail.startswith("queued retrain job")
    assert len(retrain_jobs(stores)) == 2
    done = svc.wait_done(queued.job_id)
    assert (done["progress"]["model"], done["progress"]["decision"]) == ("shapes@3", "rejected")
    d3 = stores.decisions.for_version("shapes", 3)
    assert (d3.outcome, d3.previous_version) == ("rejected", 2)
    assert d3.candidate_metrics["iou"] < d3.production_metrics["iou"], d3.reason
    assert "iou " in d3.reason and "< min_delta +0.0500" in d3.reason
    assert done["progress"]["reason"] == d3.reason
    assert {v.version: v.stage for v in stores.versions.list("shapes")} == {1: "archived", 2: "production", 3: "candidate"}

    # 6. Rollback: shapes@1 is production again, and predict jobs follow.
    back = rollback(stores, "shapes", by="test")
    assert (back.version, back.previous_version, back.source) == (1, 2, "rollback")
    assert stores.versions.production("shapes").version == 1
    predict_v1 = svc.submit("predict", predict_spec("shapes@production", data / "val/images"))
    assert svc.wait_done(predict_v1)["progress"]["model"] == "shapes@1"
    assert [d.outcome for d in stores.decisions.list("shapes")] == ["promoted", "rejected", "promoted", "promoted"]
