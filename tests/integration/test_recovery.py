"""A worker SIGKILLed mid-job, a new worker started: the job is taken over and resumes — training from
its last checkpoint, prediction skipping the images already stored. On PostgreSQL, the production store.

Two paths lead back to the job, and whichever comes first after the dead worker's lease has expired
runs it: Redis redelivers the unacked message once the visibility timeout has passed (a redelivery
that arrives while the lease still looks live is dropped as a duplicate), and the new worker's
reconciler re-queues a running job whose lease expired. Either way it is claimed exactly once more."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from segpipe.data.synthetic import make_shapes_coco
from segpipe.stores.models import Prediction, PredictionImage
from tests.integration.conftest import (
    PG_ONLY,
    Service,
    binary_train_spec,
    predict_spec,
    read_jsonl,
)

EPOCHS = 6
STEPS_PER_EPOCH = 4  # 8 images, batch 2


def _train_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["train_state"]


@pytest.mark.integration
@PG_ONLY
def test_killed_training_resumes_from_its_checkpoint(svc: Service) -> None:
    coco = make_shapes_coco(svc.data_dir("resume"), n_images=8, size=(32, 32), seed=5)
    job_id = svc.submit("train", binary_train_spec(coco.images, coco.annotations, epochs=EPOCHS))
    run_dir = svc.job_dir(job_id) / "run"
    victim = svc.main
    # kill once the first epoch's checkpoint exists and the second epoch has begun
    job = svc.wait_until(
        job_id, lambda j: (run_dir / "last.pt").is_file() and (j["progress"].get("global_step") or 0) > STEPS_PER_EPOCH,
        "a step after the first epoch's checkpoint", poll=0.1,
    )  # fmt: skip
    victim.kill()
    assert job["worker"] == svc.owner_of(victim) and job["attempts"] == 1
    logged_before = read_jsonl(run_dir / "metrics.jsonl")
    resumed_from = _train_state(run_dir / "last.pt")["epoch"]
    assert 1 <= resumed_from < EPOCHS, f"killed too late: the checkpoint is at epoch {resumed_from}"

    heir = svc.replace_main()
    done = svc.wait_done(job_id)
    assert done["attempts"] == 2 and done["worker"] == svc.owner_of(heir), svc.explain(done)
    assert done["progress"]["epoch"] == EPOCHS
    # the second attempt continued after the checkpoint's epoch instead of starting over at 1
    logged_after = read_jsonl(run_dir / "metrics.jsonl")[len(logged_before):]
    resumed_epochs = [r["epoch"] for r in logged_after if r["split"] == "train_epoch"]
    assert resumed_epochs == list(range(resumed_from + 1, EPOCHS + 1)), (resumed_from, resumed_epochs)
    assert min(r["step"] for r in logged_after) > STEPS_PER_EPOCH * resumed_from  # the step counter too
    assert _train_state(run_dir / "last.pt")["epoch"] == EPOCHS
    assert "last.pt" in done["artifacts"] and "metrics.json" in done["artifacts"]


@pytest.mark.integration
@PG_ONLY
def test_killed_predict_job_stores_every_image_exactly_once(svc: Service, tiny_model: Path) -> None:
    n = 200
    images = make_shapes_coco(svc.data_dir("many"), n_images=n, size=(64, 64), seed=6, crowd=False).images
    keys = sorted(p.stem for p in images.glob("*.png"))
    job_id = svc.submit("predict", predict_spec(tiny_model, images, batch_size=1, formats=["png"]))
    victim = svc.main
    deadline = time.monotonic() + 240
    while len(svc.stores.predictions.done_images(job_id)) < n // 10:
        assert time.monotonic() < deadline and svc.job(job_id)["state"] in ("queued", "running"), svc.explain(
            svc.job(job_id))
        time.sleep(0.05)
    victim.kill()
    killed_at = time.time()
    done_at_kill = svc.stores.predictions.done_images(job_id)
    assert 0 < len(done_at_kill) < n, f"not killed mid-way: {len(done_at_kill)} of {n} images were done"
    first_rows = {key: svc.stores.predictions.for_image(key, job_id) for key in done_at_kill}

    svc.replace_main()
    job = svc.wait_done(job_id)
    assert job["attempts"] == 2, svc.explain(job)
    assert job["progress"]["images_done"] == job["progress"]["images_total"] == n

    with svc.stores.db.read() as session:
        markers = dict(session.execute(
            select(PredictionImage.image_key, PredictionImage.instances).where(PredictionImage.job_id == job_id)).all())
        rows = {key: (count, distinct) for key, count, distinct in session.execute(
            select(Prediction.image_key, func.count(), func.count(func.distinct(Prediction.instance)))
            .where(Prediction.job_id == job_id).group_by(Prediction.image_key))}  # fmt: skip
    assert sorted(markers) == keys  # every image marked done, once (the marker is the primary key)
    for key, instances in markers.items():
        assert rows.get(key, (0, 0)) == (instances, instances), f"image {key}: rows {rows.get(key)} vs {instances}"
    assert set(rows) <= set(markers)
    # the images stored before the kill kept their rows and markers, and the second attempt skipped
    # them: it started from exactly the images stored when the first one died
    masks = svc.job_dir(job_id) / "predictions" / "masks"
    assert job["progress"]["images_resumed"] == len(done_at_kill), svc.explain(job)
    with svc.stores.db.read() as session:
        marked_at = dict(session.execute(select(PredictionImage.image_key, PredictionImage.created_at)
                                         .where(PredictionImage.job_id == job_id)).all())
    for key, before in first_rows.items():
        assert svc.stores.predictions.for_image(key, job_id) == before, f"image {key}: its rows changed"
        stamp = marked_at[key] if marked_at[key].tzinfo else marked_at[key].replace(tzinfo=UTC)
        assert stamp.timestamp() < killed_at + 1, f"image {key} was stored again"
    assert all((masks / f"{key}.png").is_file() for key in keys)

    results = json.loads((svc.job_dir(job_id) / "predictions" / "predictions.json").read_text())
    per_image = Counter(str(r["image_id"]) for r in results)
    assert per_image == Counter({key: count for key, (count, _) in rows.items()})
    assert sum(per_image.values()) == sum(markers.values()) > 0
