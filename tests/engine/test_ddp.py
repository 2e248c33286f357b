"""Two CPU processes on gloo, launched by torchrun as a user would: the run finishes, only rank 0
writes the run directory, gradients are synchronised (both ranks end with the same weights) and the
ranks train on disjoint halves of every epoch's shuffled data (EpochSampler shards).

This file is also the worker: ``python -m torch.distributed.run ... -m tests.engine.test_ddp CONFIG OUT``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segpipe.config import from_dict
from segpipe.data.synthetic import make_class_folders
from segpipe.engine.checkpoint import LAST, load_checkpoint, save_checkpoint
from segpipe.engine.hooks import Hook
from segpipe.engine.sampler import EpochSampler
from segpipe.engine.train import TrainContext
from tests.engine.runs import job_config, same_split
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2
# torchrun starts two Python processes that import torch: tens of seconds on 2 busy cores. `make test`
# (and so CI) runs it; `make test-fast` leaves it out.
pytestmark = pytest.mark.slow


def test_two_processes_share_the_work(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=6, size=(32, 32))  # 18 images: 9 per rank
    config = job_config(
        "classification", same_split({"root": str(data)}),
        {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.0}, tmp_path / "run",
        epochs=EPOCHS, batch_size=3, lr=3e-3, image_size=32,
    )  # fmt: skip
    config_path = tmp_path / "config.json"
    config_path.write_text(config.model_dump_json())
    spy = tmp_path / "spy"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "tests.engine.test_ddp", str(config_path), str(spy),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # rank 0 alone wrote the run directory, and the run completed (validation, final metrics)
    run = tmp_path / "run"
    assert (run / LAST).is_file() and (run / "metrics.json").is_file()
    assert load_checkpoint(run / LAST)["train_state"]["epoch"] == EPOCHS
    assert sorted(p.name for p in spy.iterdir()) == ["orders_0.json", "orders_1.json", "weights_0.pt", "weights_1.pt"]

    # synchronised gradients: the same final weights on both ranks, and in rank 0's checkpoint
    saved = load_checkpoint(run / LAST)["model"]
    for rank in (0, 1):
        weights = torch.load(spy / f"weights_{rank}.pt", weights_only=True)["model"]
        for key, value in saved.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=0)

    # each epoch, the ranks drew disjoint halves of one shuffled order that covers every image
    orders = [json.loads((spy / f"orders_{rank}.json").read_text()) for rank in (0, 1)]
    for epoch in range(EPOCHS):
        first, second = orders[0][str(epoch)], orders[1][str(epoch)]
        assert len(first) == len(second) == 9
        assert sorted(first + second) == list(range(18))
    assert orders[0]["0"] != orders[0]["1"]  # reshuffled every epoch


class SaveWeights(Hook):
    """Each rank keeps its final weights (what DDP must have kept equal)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_train(self, ctx: TrainContext) -> None:
        model = ctx.model.module if hasattr(ctx.model, "module") else ctx.model
        save_checkpoint(self.path, {"model": model.state_dict()})


def _worker(config_path: Path, spy: Path) -> None:
    """What each torchrun process runs: the normal training entry point, with a record of the sample
    order its sharded sampler hands out per epoch (the sampler itself is untouched)."""
    from segpipe.engine.runner import train

    rank = int(os.environ["RANK"])
    spy.mkdir(parents=True, exist_ok=True)
    orders: dict[int, list[int]] = {}
    original = EpochSampler.__iter__

    def recording(self: EpochSampler):  # type: ignore[no-untyped-def]
        indices = list(original(self))
        if self.world_size > 1:  # the training sampler (validation is not sharded)
            orders[self.epoch] = indices
        return iter(indices)

    EpochSampler.__iter__ = recording  # type: ignore[method-assign]
    config = from_dict(json.loads(config_path.read_text()))
    result = train(config, show_progress=False, extra_hooks=(SaveWeights(spy / f"weights_{rank}.pt"),))
    if result.state.epoch != EPOCHS:
        raise SystemExit(f"rank {rank}: stopped after {result.state.epoch} epochs")
    (spy / f"orders_{rank}.json").write_text(json.dumps(orders))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
