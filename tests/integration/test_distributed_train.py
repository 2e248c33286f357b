"""Distributed trainings through the queue on one host (gloo, CPU): ``resources.gpus_per_node: 2`` runs
two ranks under PyTorch's elastic agent from a real `segpipe worker`; cancel stops every rank.

The weights after k steps equal those of a single-process run with the same global batch (2 ranks ×
2 images against 1 process × 4 images): DDP averages the gradients of the two halves, the sharded
sampler hands each rank its half of the same shuffled order, and the model has no BatchNorm.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from segpipe.config import from_dict
from segpipe.data.synthetic import make_class_folders
from segpipe.engine.checkpoint import load_checkpoint
from segpipe.engine.runner import train
from tests.integration.conftest import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CNN = {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.0}


def classify_spec(root: Path, *, batch_size: int, epochs: int, **extra: Any) -> dict[str, Any]:
    source = {"root": str(root)}
    return {
        "task": "classification",
        "data": {"train": source, "val": source, "num_workers": 0},
        "augment": {"preset": "none"},
        "model": dict(CNN),
        "train": {"device": "cpu", "seed": 0, "epochs": epochs, "batch_size": batch_size, "lr": 3e-3,
                  "image_size": 32, "scheduler": "none", "threads": 1},
        **extra,
    }


def rank_processes(worker_pid: int) -> list[int]:
    """Pids of the worker's descendants that run a rank (``python -m segpipe.jobs.elastic.rank``), from /proc."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == worker_pid:
                return True
        return False

    return [pid for pid, cmd in commands.items()
            if "segpipe.jobs.elastic.rank" in cmd and "torch.distributed.run" not in cmd and descends(pid)]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_ranks_equal_one_process_with_the_global_batch(svc: Service, tmp_path: Path, accumulate: int) -> None:
    """2 ranks × 2 images, or 2 ranks × 1 image × 2 accumulated micro-batches (the first kept local by
    ``no_sync``, the second all-reducing their sum), against 1 process × 4 images."""
    data = make_class_folders(svc.data_dir(f"ddp-{accumulate}"), per_class=4, size=(32, 32))  # 12 images: 3 steps/epoch
    spec = classify_spec(data, batch_size=2 // accumulate, epochs=2, resources={"gpus_per_node": 2})
    spec["train"]["accumulate"] = accumulate
    job_id = svc.submit("train", spec)
    job = svc.wait_done(job_id)
    assert job["progress"]["world_size"] == 2 and job["progress"]["epoch"] == 2, job["progress"]
    assert "last.pt" in job["artifacts"] and "metrics.json" in job["artifacts"]
    elastic_log = (svc.job_dir(job_id) / "elastic.log").read_text()
    for rank in (0, 1):  # two ranks ran, under the agent
        assert f"rank {rank} of 2 (local rank {rank}, restart 0) starts" in elastic_log, elastic_log[-3000:]

    single = {**spec, "train": {**spec["train"], "batch_size": 4, "accumulate": 1}, "output_dir": str(tmp_path / "single")}
    single.pop("resources")
    threads = torch.get_num_threads()
    try:
        reference = train(from_dict(single), show_progress=False)
    finally:
        torch.set_num_threads(threads)
    queued = load_checkpoint(svc.job_dir(job_id) / "run" / "last.pt")
    alone = load_checkpoint(reference.last_checkpoint)
    assert queued["train_state"]["step"] == alone["train_state"]["step"] == 6
    for key, value in alone["model"].items():
        torch.testing.assert_close(queued["model"][key], value, rtol=1e-4, atol=1e-5)


def test_cancel_stops_every_rank(svc: Service) -> None:
    data = make_class_folders(svc.data_dir("ddp-cancel"), per_class=8, size=(32, 32))
    spec = classify_spec(data, batch_size=1, epochs=200, resources={"gpus_per_node": 2})
    job_id = svc.submit("train", spec)
    assert svc.main is not None
    svc.wait_until(job_id, lambda j: (j["progress"].get("global_step") or 0) >= 2, "two steps")
    assert len(rank_processes(svc.main.pid)) == 2
    svc.cancel(job_id)
    job = svc.wait_done(job_id, expect="cancelled")
    assert job["progress"]["epoch"] < 200
    deadline = time.monotonic() + 30
    while rank_processes(svc.main.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rank_processes(svc.main.pid) == []
    state = load_checkpoint(svc.job_dir(job_id) / "run" / "last.pt")["train_state"]
    assert state["step"] >= 2  # rank 0 saved where the ranks stopped
