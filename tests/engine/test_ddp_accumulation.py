"""Gradient accumulation under DDP: the micro-batches that do not end an optimizer step keep their
gradients local (``no_sync``), so an epoch pays one all-reduce per optimizer step, not per batch.

A one-process gloo group is enough to count them: DDP runs its reducer (and the communication hook that
counts) whatever the world size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from segpipe.config import TrainConfig
from segpipe.engine import distributed
from segpipe.engine.train import TrainContext, build_optimizer, fit
from tests.engine.test_train import Points, ToyAdapter, toy_model


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Any:
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def count_all_reduces(model: nn.parallel.DistributedDataParallel) -> list[int]:
    calls = [0]

    def hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations as objects, not strings
        calls[0] += 1
        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])

    model.register_comm_hook(None, hook)
    return calls


@pytest.mark.usefixtures("one_rank_group")
@pytest.mark.parametrize(("accumulate", "batches", "all_reduces"), [(1, 7, 7), (3, 7, 3), (4, 8, 2)])
def test_one_all_reduce_per_optimizer_step(tmp_path: Path, accumulate: int, batches: int,
                                           all_reduces: int) -> None:
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-2, accumulate=accumulate, scheduler="none", device="cpu")
    loader = DataLoader(Points(n=2 * batches), batch_size=2)
    model = distributed.wrap(toy_model(), torch.device("cpu"), distributed.DistInfo(0, 2, 0))
    assert isinstance(model, nn.parallel.DistributedDataParallel)
    calls = count_all_reduces(model)
    ctx = TrainContext(model=model, adapter=ToyAdapter(), optimizer=build_optimizer(model, cfg), scheduler=None,
                       cfg=cfg, device=torch.device("cpu"), monitor="loss", batches_per_epoch=len(loader))
    fit(ctx, loader, [])
    assert ctx.state.step == -(-batches // accumulate)
    assert calls[0] == all_reduces  # one bucket (CPU ranks), reduced at each step's last micro-batch


@pytest.mark.usefixtures("one_rank_group")
def test_a_step_whose_last_batch_did_not_sync_is_averaged_by_hand() -> None:
    """A loader that ends before the expected count leaves the step's gradients local: they are
    all-reduced before the optimizer step, not applied unsynchronised."""
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-2, accumulate=4, scheduler="none", device="cpu")
    loader = DataLoader(Points(n=6), batch_size=2)  # 3 batches, though the context expects 8
    model = distributed.wrap(toy_model(), torch.device("cpu"), distributed.DistInfo(0, 2, 0))
    assert isinstance(model, nn.parallel.DistributedDataParallel)
    calls = count_all_reduces(model)
    reduced: list[int] = []
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        reduced.append(tensor.numel())
        return real_all_reduce(tensor, *args, **kwargs)

    ctx = TrainContext(model=model, adapter=ToyAdapter(), optimizer=build_optimizer(model, cfg), scheduler=None,
                       cfg=cfg, device=torch.device("cpu"), monitor="loss", batches_per_epoch=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dist, "all_reduce", counting_all_reduce)
        fit(ctx, loader, [])
    assert ctx.state.step == 1 and calls[0] == 0
    assert sorted(reduced) == sorted(p.numel() for p in model.parameters())
