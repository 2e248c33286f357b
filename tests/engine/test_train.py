"""The loop on a toy model: resume exactness, accumulation, stop requests, schedules, checkpoints."""

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from segpipe.config import TrainConfig
from segpipe.engine.checkpoint import LAST, load_checkpoint, save_checkpoint
from segpipe.engine.hooks import CheckpointHook, EarlyStopHook, Hook, MetricsLogHook, StopRequestHook
from segpipe.engine.sampler import EpochSampler
from segpipe.engine.train import TrainContext, build_optimizer, build_scheduler, fit
from segpipe.errors import WeightsError


class Points(Dataset):
    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": self.y[i]}


class ToyAdapter:
    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        return {k: v.to(device) for k, v in batch.items()}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"mse": ((model(batch["x"]).squeeze(1) - batch["y"]) ** 2).mean()}


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


def run(tmp: Path, cfg: TrainConfig, resume: Path | None = None, hooks: list | None = None) -> TrainContext:
    data = Points()
    sampler = EpochSampler(len(data), shuffle=True, seed=cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler)
    model = toy_model()
    opt = build_optimizer(model, cfg)
    ctx = TrainContext(
        model=model, adapter=ToyAdapter(), optimizer=opt, scheduler=build_scheduler(opt, cfg, len(loader)),
        cfg=cfg, device=torch.device("cpu"), monitor="neg_loss", batches_per_epoch=len(loader),
    )
    if resume is not None:
        ctx.restore(load_checkpoint(resume))
    else:
        torch.manual_seed(cfg.seed)

    def validate(c: TrainContext) -> dict[str, float]:
        c.model.eval()
        with torch.no_grad():
            return {"neg_loss": -float(ToyAdapter().loss(c.model, {"x": data.x, "y": data.y})["mse"])}

    fit(ctx, loader, [CheckpointHook(tmp), MetricsLogHook(tmp / "metrics.jsonl", every_steps=1), *(hooks or [])],
        validate, before_epoch=lambda e, start: sampler.set_epoch(e, start * cfg.batch_size))
    return ctx


def weights(ctx: TrainContext) -> list[torch.Tensor]:
    return [p.detach().clone() for p in ctx.model.parameters()]


class StopAfterEpoch(Hook):
    """Simulates a crash right after an epoch's checkpoint."""

    def after_epoch(self, ctx: TrainContext) -> None:
        ctx.request_stop("simulated crash")


@pytest.mark.parametrize("scheduler", ["cosine", "step", "onecycle", "none"])
def test_two_epochs_equal_one_plus_resume_one(tmp_path: Path, scheduler: str) -> None:
    cfg = TrainConfig(epochs=2, batch_size=5, lr=0.05, scheduler=scheduler, warmup_steps=2, optimizer="sgd", step_size=1)
    straight = run(tmp_path / "a", cfg)
    if scheduler in ("cosine", "onecycle"):  # the schedule depends on the total: interrupt a 2-epoch run
        run(tmp_path / "b", cfg, hooks=[StopAfterEpoch()])
    else:  # a 1-epoch run extended to 2 epochs
        run(tmp_path / "b", cfg.model_copy(update={"epochs": 1}))
    resumed = run(tmp_path / "b2", cfg, resume=tmp_path / "b" / LAST)
    assert resumed.state.epoch == straight.state.epoch == 2
    assert resumed.state.step == straight.state.step
    for a, b in zip(weights(straight), weights(resumed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_learns_and_writes_checkpoints_and_log(tmp_path: Path) -> None:
    ctx = run(tmp_path, TrainConfig(epochs=25, batch_size=6, lr=0.05, optimizer="adamw"))
    assert ctx.state.best is not None and ctx.state.best > -0.5  # the loss starts around 14
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any('"split": "val"' in line for line in lines) and any('"split": "train"' in line for line in lines)


def test_accumulation_takes_fewer_optimizer_steps(tmp_path: Path) -> None:
    ctx = run(tmp_path, TrainConfig(epochs=1, batch_size=4, accumulate=3, lr=0.01))
    assert ctx.state.step == 2  # 6 batches / 3


def test_stop_request_keeps_a_mid_epoch_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.01)
    ctx = run(tmp_path, cfg, hooks=[StopRequestHook(cancel)])
    assert ctx.state.stop_reason == "cancelled" and ctx.state.epoch == 0 and ctx.state.batch_in_epoch == 3
    saved = load_checkpoint(tmp_path / LAST)
    assert saved["train_state"]["batch_in_epoch"] == 3
    resumed = run(tmp_path, cfg, resume=tmp_path / LAST)
    assert resumed.state.epoch == 2 and resumed.state.step == 12  # 3 before + 3 + 6 after


def test_early_stop(tmp_path: Path) -> None:
    ctx = run(tmp_path, TrainConfig(epochs=30, batch_size=8, lr=1e-9), hooks=[EarlyStopHook(patience=2)])
    assert ctx.state.stop_reason is not None and "early stop" in ctx.state.stop_reason
    assert ctx.state.epoch < 30


def test_checkpoint_loading_is_weights_only(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ok.pt", {"model": {"w": torch.ones(2)}})
    assert load_checkpoint(tmp_path / "ok.pt")["model"]["w"].sum() == 2
    torch.save({"model": {}, "evil": object()}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="weights_only"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
