"""Training jobs on a real worker: progress while they run, cancellation (running and queued), and a
duplicate delivery of a running job's message dropped by its live lease."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from segpipe import service as service_mod
from segpipe.data.synthetic import make_shapes_coco
from tests.integration.conftest import (
    TERMINAL,
    Service,
    binary_train_spec,
    predict_spec,
    read_jsonl,
)


def _train_spec(svc: Service, name: str, epochs: int, n_images: int = 8, size: int = 32) -> dict[str, Any]:
    coco = make_shapes_coco(svc.data_dir(name), n_images=n_images, size=(size, size), seed=3)
    return binary_train_spec(coco.images, coco.annotations, epochs=epochs, size=size)


def _stepped(job: dict[str, Any]) -> bool:
    return job["state"] == "running" and (job["progress"].get("global_step") or 0) >= 1


def _epochs_logged(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train_epoch"]


@pytest.mark.integration
def test_train_job_progress_advances_while_it_runs(svc: Service) -> None:
    # 12 images of 48 px, batch 2: 6 steps an epoch, so even a fast machine reports several points
    job_id = svc.submit("train", _train_spec(svc, "progress", epochs=5, n_images=12, size=48))
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 240
    while True:
        job = svc.job(job_id)
        progress = job["progress"]
        if job["state"] == "running" and progress.get("global_step"):
            point = (progress["epoch"], progress["global_step"])
            if not seen or seen[-1] != point:
                seen.append(point)
        if job["state"] in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(0.15)
    assert job["state"] == "succeeded", svc.explain(job)
    assert len(seen) >= 3, f"progress seen while running: {seen}"
    steps = [step for _, step in seen]
    assert steps == sorted(set(steps)), f"global step went backwards: {seen}"
    assert [e for e, _ in seen] == sorted(e for e, _ in seen), f"epoch went backwards: {seen}"
    assert seen[-1][0] > seen[0][0], f"the epoch counter never moved while the job ran: {seen}"
    final = job["progress"]
    assert (final["phase"], final["epoch"], final["epochs"]) == ("done", 5, 5)
    assert final["metrics"]["iou"] >= 0.0
    assert {"best.pt", "last.pt", "metrics.json"} <= set(job["artifacts"])
    # the pictures and the TensorBoard events are the job's artifacts too; progress had speed and ETA
    assert {"plots/curves.png", "plots/val_overlays.png", "plots/confusion.png"} <= set(job["artifacts"])
    assert any(name.startswith("tensorboard/events.out.tfevents.") for name in job["artifacts"])
    assert final["images_per_s"] > 0 and final["eta_s"] is not None
    assert _epochs_logged(svc.job_dir(job_id) / "run") == [1, 2, 3, 4, 5]


def _queue_drained(client: redis.Redis, job_id: str) -> bool:
    """No message for ``job_id`` waits in a Redis queue or sits unacknowledged (kombu's ``unacked`` hash)."""
    queued = any(client.llen(key) for key in client.scan_iter(match="gpu*"))
    unacked = any(job_id.encode() in value for value in client.hvals("unacked"))
    return not queued and not unacked


@pytest.mark.integration
def test_cancel_running_training_keeps_checkpoint_and_queued_job_never_runs(
    svc: Service, tiny_model: Path, redis_client: redis.Redis
) -> None:
    running = svc.submit("train", _train_spec(svc, "cancel", epochs=200))
    svc.wait_until(running, _stepped, "a training step")
    # the worker is busy (one job at a time): this one waits in the queue
    images = make_shapes_coco(svc.data_dir("never"), n_images=2, size=(32, 32), seed=8).images
    queued = svc.submit("predict", predict_spec(tiny_model, images))
    assert svc.cancel(queued)["state"] == "cancelled"

    requested = svc.cancel(running)
    assert requested["state"] in ("running", "cancelled") and requested["cancel_requested"]
    job = svc.wait_done(running, expect="cancelled", timeout=120)
    assert job["error"] is None
    last = svc.job_dir(running) / "run" / "last.pt"
    assert last.is_file() and job["artifacts"]["last.pt"] == "run/last.pt"
    state = torch.load(last, map_location="cpu", weights_only=True)["train_state"]
    assert state["step"] >= 1 and state["epoch"] < 200

    # once the worker has taken (and dropped) the cancelled job's message, nothing of it ever ran
    deadline = time.monotonic() + 60
    while True:
        if _queue_drained(redis_client, queued):
            time.sleep(1.0)  # twice, a second apart: a message moves from the list to `unacked` in two steps
            if _queue_drained(redis_client, queued):
                break
        assert time.monotonic() < deadline, f"the cancelled job's message was never consumed\n{svc.logs()}"
        time.sleep(0.2)
    never = svc.job(queued)
    assert (never["state"], never["attempts"], never["started_at"], never["worker"]) == ("cancelled", 0, None, None)
    assert not svc.job_dir(queued).exists()
    assert svc.stores.predictions.done_images(queued) == set()


@pytest.mark.integration
def test_duplicate_delivery_is_dropped_while_the_lease_is_live(svc: Service) -> None:
    # A second worker on the cpu queue only: the job (gpu queue) goes to the main worker, and the
    # duplicate, published on cpu, reaches the idle second worker at once, while the job still runs.
    second = svc.start_worker(queues="cpu")
    job_id = svc.submit("train", _train_spec(svc, "duplicate", epochs=4, n_images=12, size=48))
    job = svc.wait_until(job_id, _stepped, "a training step")
    assert job["worker"] == svc.owner_of(svc.main)
    service_mod.publish(svc.celery, job_id, "cpu")
    second.wait_for_log(f"job {job_id} not run: duplicate", timeout=90)

    done = svc.wait_done(job_id)
    assert done["attempts"] == 1 and done["worker"] == svc.owner_of(svc.main), svc.explain(done)
    assert _epochs_logged(svc.job_dir(job_id) / "run") == [1, 2, 3, 4]  # ran once, never restarted
    assert "Traceback" not in second.text()
