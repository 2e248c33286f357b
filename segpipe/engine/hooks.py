"""Hooks: the few things the training loop does besides stepping (detectron2's HookBase, trimmed).

The loop calls, in order: ``before_train``, then per epoch ``before_epoch``, ``after_step`` after every
batch, ``after_epoch`` once validation metrics are in ``ctx.state.metrics``; finally ``after_train``
(also after a stop request, so a cancelled run still leaves its checkpoint).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.engine.checkpoint import BEST, LAST, save_checkpoint, weights_only_state

if TYPE_CHECKING:
    from segpipe.engine.progress_hooks import Throughput
    from segpipe.engine.train import TrainContext


class Hook:
    def before_train(self, ctx: TrainContext) -> None: ...
    def before_epoch(self, ctx: TrainContext) -> None: ...
    def after_step(self, ctx: TrainContext) -> None: ...
    def after_epoch(self, ctx: TrainContext) -> None: ...
    def after_train(self, ctx: TrainContext) -> None: ...


class CheckpointHook(Hook):
    """``last.pt`` after every epoch (and when training stops early), ``best.pt`` (weights, no optimizer
    state) when the monitored metric improves, plus ``last.pt`` every ``every_steps`` optimizer steps
    for long epochs."""

    def __init__(self, out_dir: Path, every_steps: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.every_steps = every_steps
        self._saved_at: tuple[int, int] | None = None

    def _save(self, ctx: TrainContext, name: str) -> None:
        if ctx.is_main:
            state = ctx.checkpoint_state()
            save_checkpoint(self.out_dir / name, weights_only_state(state) if name == BEST else state)
        self._saved_at = (ctx.state.epoch, ctx.state.batch_in_epoch)

    def after_step(self, ctx: TrainContext) -> None:
        if self.every_steps and ctx.state.step_done and ctx.state.step % self.every_steps == 0:
            self._save(ctx, LAST)

    def after_epoch(self, ctx: TrainContext) -> None:
        if ctx.state.improved:
            self._save(ctx, BEST)
        self._save(ctx, LAST)

    def after_train(self, ctx: TrainContext) -> None:
        if self._saved_at != (ctx.state.epoch, ctx.state.batch_in_epoch):
            self._save(ctx, LAST)


class MetricsLogHook(Hook):
    """Appends one JSON record per logged step and per epoch to ``metrics.jsonl``."""

    def __init__(self, path: Path, every_steps: int = 10) -> None:
        self.path = Path(path)
        self.every_steps = every_steps

    def _write(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        if ctx.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def after_step(self, ctx: TrainContext) -> None:
        s = ctx.state
        if s.step_done and s.step % self.every_steps == 0:
            self._write(ctx, {"split": "train", "epoch": s.epoch + 1, "step": s.step, "lr": ctx.lr, **ctx.losses()})

    def after_epoch(self, ctx: TrainContext) -> None:
        s = ctx.state
        self._write(ctx, {"split": "train_epoch", "epoch": s.epoch, "step": s.step, **s.epoch_losses})
        if s.metrics:
            self._write(ctx, {"split": "val", "epoch": s.epoch, "step": s.step, **s.metrics})


class EarlyStopHook(Hook):
    """Stops when the monitored metric has not improved for `patience` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def after_epoch(self, ctx: TrainContext) -> None:
        s = ctx.state
        if s.best_epoch is not None and s.epoch - s.best_epoch >= self.patience:
            ctx.request_stop(f"early stop: {ctx.monitor} did not improve for {self.patience} epochs")


class StopRequestHook(Hook):
    """Cooperative cancellation: `should_stop()` is polled every `every_steps` steps (e.g. a job's
    cancel flag in the store); when it says yes the loop stops and the checkpoint hook saves."""

    def __init__(self, should_stop: Callable[[], bool], every_steps: int = 1, reason: str = "cancelled") -> None:
        self.should_stop = should_stop
        self.every_steps = every_steps
        self.reason = reason

    def after_step(self, ctx: TrainContext) -> None:
        batch = ctx.state.batch_in_epoch
        due = batch % self.every_steps == 0 or batch == ctx.batches_per_epoch  # and always at an epoch's end
        if due and self.should_stop():
            ctx.request_stop(self.reason)


class ProgressCallbackHook(Hook):
    """Reports progress to a callable (job store, terminal bar…) at most every `min_interval_s`."""

    def __init__(self, report: Callable[[dict[str, Any]], None], min_interval_s: float = 1.0,
                 throughput: Throughput | None = None) -> None:
        self.report = report
        self.min_interval_s = min_interval_s
        self.throughput = throughput
        self._last = 0.0

    def _progress(self, ctx: TrainContext) -> dict[str, Any]:
        s = ctx.state
        return {
            "epoch": s.epoch + (0 if s.batch_in_epoch == 0 else 1),
            "epochs": ctx.cfg.epochs,
            "step": s.batch_in_epoch,
            "steps": ctx.batches_per_epoch,
            "global_step": s.step,
            "loss": ctx.losses().get("loss"),
            "metrics": dict(s.metrics),
            **self._speed(ctx),
        }

    def _speed(self, ctx: TrainContext) -> dict[str, Any]:
        if self.throughput is None:
            return {}
        rate, eta = self.throughput.images_per_s(ctx.cfg.batch_size), self.throughput.eta_s(ctx)
        return {"images_per_s": None if rate is None else round(rate, 2), "eta_s": None if eta is None else round(eta, 1)}

    def after_step(self, ctx: TrainContext) -> None:
        now = time.monotonic()
        if now - self._last >= self.min_interval_s:
            self._last = now
            self.report(self._progress(ctx))

    def after_epoch(self, ctx: TrainContext) -> None:
        self._last = time.monotonic()
        self.report(self._progress(ctx))
