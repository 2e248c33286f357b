"""The training loop. It knows no task: a task adapter turns a batch into a loss dict.

``fit`` runs epochs of optimizer steps with AMP (CUDA only), gradient accumulation and clipping, a
per-step LR schedule with warm-up, and a validation callable after each epoch; hooks do checkpoints,
logs, progress, early stopping and cancellation. ``TrainContext`` is the state the hooks can see.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch
from torch import nn

from segpipe.config import TrainConfig
from segpipe.engine import distributed
from segpipe.engine.checkpoint import rng_state, set_rng_state
from segpipe.engine.hooks import Hook
from segpipe.errors import ConfigError


class Adapter(Protocol):
    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]: ...
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches consumed in the current (unfinished) epoch
    best: float | None = None
    best_epoch: int | None = None
    improved: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch_losses: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None
    step_done: bool = False  # did the last batch finish an optimizer step (accumulation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "metrics": {k: v for k, v in self.metrics.items() if isinstance(v, (int, float))},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(
            epoch=int(d["epoch"]),
            step=int(d["step"]),
            batch_in_epoch=int(d.get("batch_in_epoch", 0)),
            best=d.get("best"),
            best_epoch=d.get("best_epoch"),
            metrics=dict(d.get("metrics", {})),
        )


@dataclass
class TrainContext:
    model: nn.Module
    adapter: Adapter
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    cfg: TrainConfig
    device: torch.device
    monitor: str
    monitor_mode: str = "max"
    batches_per_epoch: int = 0  # batches in one epoch (progress, accumulation boundary)
    is_main: bool = True
    scaler: torch.amp.GradScaler | None = None
    extra_state: dict[str, Any] = field(default_factory=dict)  # config text, category map…
    state: TrainState = field(default_factory=TrainState)
    _loss_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def losses(self) -> dict[str, float]:
        """Losses of the last batch as floats (synchronises with the device: call sparingly)."""
        return {k: float(v) for k, v in self._loss_tensors.items()}

    def request_stop(self, reason: str) -> None:
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    def _unwrapped(self) -> nn.Module:
        """The model itself, under DistributedDataParallel's wrapper when there is one."""
        inner = getattr(self.model, "module", self.model)
        assert isinstance(inner, nn.Module)
        return inner

    def checkpoint_state(self) -> dict[str, Any]:
        model = self._unwrapped()
        return {
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "train_state": self.state.to_dict(),
            "rng": rng_state(),
            **self.extra_state,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        model = self._unwrapped()
        if "optimizer" not in checkpoint:
            raise ConfigError("this checkpoint holds weights only (a best.pt): resume from the run's last.pt, "
                              "or start a new training with it as model.weights")
        model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler and checkpoint.get("scheduler"):
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState.from_dict(checkpoint["train_state"])
        set_rng_state(checkpoint["rng"])


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    dtype = amp_dtype(device, amp)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """bf16/fp16 on CUDA; None (full precision) on CPU or with amp 'off'."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def build_optimizer(model: nn.Module, cfg: TrainConfig, backbone: set[str] | None = None) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on norms and biases. With ``cfg.backbone_lr_mult`` < 1 the
    parameters named in `backbone` (the pretrained part) learn at ``lr × backbone_lr_mult``."""
    slow = backbone if backbone and cfg.backbone_lr_mult != 1.0 else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets.setdefault((name in slow, p.ndim <= 1), []).append(p)
    groups = []
    # the usual recipe for both CNNs and detectors: no weight decay on norms and biases
    for in_backbone in (False, True):
        for no_decay in (False, True):
            params = buckets.get((in_backbone, no_decay), [])
            if in_backbone and not params:
                continue
            groups.append({"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                           "lr": cfg.lr * (cfg.backbone_lr_mult if in_backbone else 1.0)})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-optimizer-step schedule, linear warm-up first (``warmup_steps``)."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warmup = min(cfg.warmup_steps, total - 1)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
            pct_start=max(warmup / total, 0.05) if warmup else 0.3,
        )

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "cosine":
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.scheduler == "step":
            return cfg.gamma ** (step // max(cfg.step_size * steps_per_epoch, 1))
        return 1.0

    if cfg.scheduler == "none" and not warmup:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def fit(
    ctx: TrainContext,
    loader: Iterable[dict[str, Any]],
    hooks: list[Hook],
    validate: Callable[[TrainContext], dict[str, Any]] | None = None,
    before_epoch: Callable[[int, int], None] | None = None,
) -> TrainState:
    """Train until ``cfg.epochs`` epochs are done or a hook requests a stop.

    ``before_epoch(epoch, start_batch)`` lets the caller re-seed sampler / augmentation for the epoch
    (this is what makes a resumed run identical to an uninterrupted one).
    """
    cfg, s = ctx.cfg, ctx.state
    for h in hooks:
        h.before_train(ctx)
    while s.epoch < cfg.epochs and s.stop_reason is None:
        if before_epoch is not None:
            before_epoch(s.epoch, s.batch_in_epoch)
        for h in hooks:
            h.before_epoch(ctx)
        finished = _run_epoch(ctx, loader, hooks)
        if not finished:
            break
        s.epoch += 1
        s.batch_in_epoch = 0
        s.metrics = validate(ctx) if validate is not None else {}
        value = s.metrics.get(ctx.monitor)
        s.improved = is_better(value, s.best, ctx.monitor_mode)
        if s.improved and value is not None:
            s.best, s.best_epoch = float(value), s.epoch
        for h in hooks:
            h.after_epoch(ctx)
    for h in hooks:
        h.after_train(ctx)
    return s


def _run_epoch(ctx: TrainContext, loader: Iterable[dict[str, Any]], hooks: list[Hook]) -> bool:
    """One pass over the loader; False when a stop was requested before the epoch ended."""
    cfg, s, model = ctx.cfg, ctx.state, ctx.model
    model.train()
    sums: dict[str, torch.Tensor] = {}
    counted = 0
    limit = cfg.max_steps_per_epoch * cfg.accumulate if cfg.max_steps_per_epoch else None
    for raw_batch in loader:
        batch = ctx.adapter.prepare(raw_batch, ctx.device)
        ends_step = _ends_step(s.batch_in_epoch + 1, cfg.accumulate, ctx.batches_per_epoch)
        with distributed.gradient_sync(model, ends_step):
            with autocast(ctx.device, cfg.amp):
                losses = ctx.adapter.loss(model, batch)
            total = cast(torch.Tensor, sum(losses.values()))  # the adapter returns at least one loss
            loss = total / cfg.accumulate
            (ctx.scaler.scale(loss) if ctx.scaler else loss).backward()
        s.batch_in_epoch += 1
        s.step_done = ends_step
        if s.step_done:
            _optimizer_step(ctx)
        detached = {k: v.detach() for k, v in losses.items()}
        detached["loss"] = total.detach()
        ctx._loss_tensors = detached  # noqa: SLF001 - the context's own slot, written by the loop that owns it
        for k, v in detached.items():
            sums[k] = sums.get(k, 0) + v
        counted += 1
        for h in hooks:
            h.after_step(ctx)
        if s.stop_reason is not None:
            return False
        if limit is not None and s.batch_in_epoch >= limit:
            break
    if not s.step_done and counted:  # leftover accumulated gradients at the end of the epoch
        distributed.average_gradients(model)  # under DDP the last micro-batch kept them local (no_sync)
        _optimizer_step(ctx)
    s.epoch_losses = {k: float(v) / max(counted, 1) for k, v in sums.items()}
    return True


def _ends_step(batch_number: int, accumulate: int, batches_per_epoch: int) -> bool:
    """Whether the epoch's ``batch_number``-th batch (from 1) ends an optimizer step."""
    return batch_number % accumulate == 0 or batch_number == batches_per_epoch


def _optimizer_step(ctx: TrainContext) -> None:
    cfg = ctx.cfg
    if cfg.grad_clip:
        if ctx.scaler:
            ctx.scaler.unscale_(ctx.optimizer)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), cfg.grad_clip)
    if ctx.scaler:
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        ctx.optimizer.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scheduler is not None:
        ctx.scheduler.step()
    ctx.state.step += 1
    ctx.state.step_done = True
