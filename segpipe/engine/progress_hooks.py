"""Training progress for people: a rich bar on a terminal, plain lines at a steady interval in logs,
and the progress dicts a queued job stores. All three share `Throughput` (images/s and ETA)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from segpipe.engine.hooks import Hook
from segpipe.progress import format_duration, format_fields, interval_s, is_terminal, timestamp

if TYPE_CHECKING:
    from segpipe.engine.train import TrainContext


class Throughput:
    """Images per second of the training steps (validation time excluded) and the time left.

    The ETA is the batches left at the measured step rate, plus one validation pass (as long as the
    last one) per epoch left."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.train_seconds = 0.0
        self.batches = 0
        self.val_seconds: float | None = None
        self._epoch_start: float | None = None
        self._last_step: float | None = None

    def before_epoch(self) -> None:
        self._epoch_start = self._last_step = self.clock()

    def after_step(self) -> None:
        now = self.clock()
        if self._last_step is not None:
            self.train_seconds += now - self._last_step
        self._last_step = now
        self.batches += 1

    def after_epoch(self) -> None:
        if self._last_step is not None:
            self.val_seconds = self.clock() - self._last_step

    def images_per_s(self, batch_size: int) -> float | None:
        return self.batches * batch_size / self.train_seconds if self.train_seconds > 0 and self.batches else None

    def eta_s(self, ctx: TrainContext) -> float | None:
        if not self.batches or self.train_seconds <= 0:
            return None
        s, per_epoch = ctx.state, max(ctx.batches_per_epoch, 1)
        epochs_left_after_this = max(ctx.cfg.epochs - s.epoch - 1, 0)
        if s.batch_in_epoch == 0:  # between epochs: the current one is done
            epochs_left_after_this = max(ctx.cfg.epochs - s.epoch, 0)
            batches_left = epochs_left_after_this * per_epoch
            vals_left = epochs_left_after_this
        else:
            batches_left = per_epoch - s.batch_in_epoch + epochs_left_after_this * per_epoch
            vals_left = epochs_left_after_this + 1
        return batches_left * self.train_seconds / self.batches + vals_left * (self.val_seconds or 0.0)


class ThroughputHook(Hook):
    """Feeds a `Throughput`; hooks that show progress read it."""

    def __init__(self, throughput: Throughput) -> None:
        self.throughput = throughput

    def before_epoch(self, ctx: TrainContext) -> None:
        self.throughput.before_epoch()

    def after_step(self, ctx: TrainContext) -> None:
        self.throughput.after_step()

    def after_epoch(self, ctx: TrainContext) -> None:
        self.throughput.after_epoch()


def _scalar_metrics(metrics: dict[str, Any], first: str | None, limit: int = 4) -> dict[str, float]:
    shown = {k: float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith(("val_", "num_"))}
    order = ([first] if first in shown else []) + [k for k in shown if k != first]
    return {k: shown[k] for k in order[:limit]}


class PlainProgressHook(Hook):
    """One plain line every ``interval`` seconds while training (epoch, step, loss, lr, images/s, ETA)
    and one per finished epoch with its validation metrics; for logs, where a bar cannot be drawn."""

    def __init__(self, throughput: Throughput, stream: TextIO | None = None, interval: float | None = None,
                 label: str = "train") -> None:
        import sys

        self.throughput = throughput
        self.stream = stream or sys.stdout
        self.interval = interval_s() if interval is None else interval
        self.label = label
        self._last = 0.0

    def _write(self, text: str) -> None:
        self.stream.write(f"{timestamp()} {self.label} {text}\n")
        self.stream.flush()

    def before_train(self, ctx: TrainContext) -> None:
        if ctx.is_main:
            self._last = time.monotonic()
            s = ctx.state
            start = f"from epoch {s.epoch + 1} step {s.batch_in_epoch + 1}" if s.step else "from the start"
            self._write(f"{ctx.cfg.epochs} epochs of {ctx.batches_per_epoch} steps, batch {ctx.cfg.batch_size}, {start}")

    def after_step(self, ctx: TrainContext) -> None:
        now = time.monotonic()
        if not ctx.is_main or now - self._last < self.interval:
            return
        self._last = now
        s, t = ctx.state, self.throughput
        loss = ctx.losses().get("loss", math.nan)
        rate = t.images_per_s(ctx.cfg.batch_size)
        self._write(
            f"epoch {s.epoch + 1}/{ctx.cfg.epochs} step {s.batch_in_epoch}/{ctx.batches_per_epoch} "
            f"loss {loss:.4f} lr {ctx.lr:.3g} | {rate or 0:.1f} img/s | ETA {format_duration(t.eta_s(ctx))}"
        )

    def after_epoch(self, ctx: TrainContext) -> None:
        if not ctx.is_main:
            return
        s = ctx.state
        metrics = format_fields(_scalar_metrics(s.metrics, ctx.monitor))
        loss = s.epoch_losses.get("loss")
        best = " (best)" if s.improved else ""
        self._write(
            f"epoch {s.epoch}/{ctx.cfg.epochs} done: loss {loss if loss is None else f'{loss:.4f}'}"
            + (f" | {metrics}{best}" if metrics else "")
            + f" | ETA {format_duration(self.throughput.eta_s(ctx))}"
        )

    def after_train(self, ctx: TrainContext) -> None:
        if ctx.is_main:
            s = ctx.state
            why = f": {s.stop_reason}" if s.stop_reason else ""
            self._write(f"finished after {s.epoch} epochs, {s.step} steps{why}")


class RichProgressHook(Hook):
    """A terminal progress bar: epoch, step, loss, images/s, ETA (rich)."""

    def __init__(self, throughput: Throughput | None = None) -> None:
        self.throughput = throughput
        self._progress: Any = None
        self._task: Any = None

    def before_train(self, ctx: TrainContext) -> None:
        if not ctx.is_main:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} {task.fields[rate]}"),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=ctx.batches_per_epoch, epoch=1, epochs=ctx.cfg.epochs,
                                             loss="-", rate="", metrics="")

    def before_epoch(self, ctx: TrainContext) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=ctx.batches_per_epoch, completed=ctx.state.batch_in_epoch)
            self._progress.update(self._task, epoch=ctx.state.epoch + 1)

    def after_step(self, ctx: TrainContext) -> None:
        if self._progress is not None:
            loss = ctx.losses().get("loss", math.nan)
            rate = self.throughput.images_per_s(ctx.cfg.batch_size) if self.throughput else None
            self._progress.update(self._task, completed=ctx.state.batch_in_epoch, loss=f"{loss:.4f}",
                                  rate=f"{rate:.1f} img/s" if rate else "")

    def after_epoch(self, ctx: TrainContext) -> None:
        if self._progress is not None and ctx.state.metrics:
            text = format_fields(_scalar_metrics(ctx.state.metrics, ctx.monitor))
            self._progress.update(self._task, metrics=text)

    def after_train(self, ctx: TrainContext) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def display_hooks(throughput: Throughput, stream: TextIO | None = None) -> list[Hook]:
    """What a person watching ``stream`` (stdout by default) sees: a bar on a terminal, lines otherwise."""
    if is_terminal(stream):
        return [RichProgressHook(throughput)]
    return [PlainProgressHook(throughput, stream)]
