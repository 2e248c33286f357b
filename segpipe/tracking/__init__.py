"""Experiment tracking: the one front door through which a training run reports to TensorBoard,
MLflow, or any tracker registered in ``TRACKERS``.

`TrackingHook` is an engine hook: per logged step the training losses and learning rate, per epoch
the epoch losses and validation metrics; when the run is finished (`finish`) its final metrics, its
pictures and its artifact files. Trackers are optional: none is needed to train. A tracker that
cannot start (its package missing, its server unreachable) or fails later is switched off with one
warning, and training goes on.

A tracker is one registered factory ``(TrackingContext) -> Tracker | None`` (None: not configured)::

    @TRACKERS.register("name", description="...")
    def open_name(ctx: TrackingContext) -> Tracker | None: ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from segpipe.engine.hooks import Hook
from segpipe.registry import Registry

if TYPE_CHECKING:
    from segpipe.engine.train import TrainContext

log = logging.getLogger("segpipe.tracking")


@dataclass
class TrackingContext:
    """What a tracker may know about a run: its folder, resolved config (as a dict), name and tags."""

    run_dir: Path
    config: dict[str, Any]
    run_name: str
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)
    mlflow_uri: str | None = None


class Tracker(Protocol):
    name: str

    def log_scalars(self, values: dict[str, float], step: int) -> None: ...
    def log_pictures(self, pictures: list[Path], step: int) -> None: ...
    def log_artifacts(self, files: dict[str, Path]) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def close(self, status: str) -> None: ...
    def reference(self) -> dict[str, str]: ...


TRACKERS: Registry[Callable[[TrackingContext], Tracker | None]] = Registry("tracker")


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.01}}`` → ``{"train.lr": "0.01"}``; lists and None as text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = "" if value is None else str(value)
    return out


def scalars(values: dict[str, Any], prefix: str) -> dict[str, float]:
    """Numeric values only (no bools, no lists), keys prefixed (``val/segm_AP``)."""
    return {f"{prefix}{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TrackingHook(Hook):
    """Reports a training run to every configured tracker; ``every_steps`` sets the step cadence."""

    def __init__(self, ctx: TrackingContext, every_steps: int = 10) -> None:
        self.ctx = ctx
        self.every_steps = every_steps
        self.trackers: list[Tracker] = []
        for entry_name in TRACKERS.names():
            factory = TRACKERS.get(entry_name)
            try:
                tracker = factory(ctx)
            except Exception as e:  # noqa: BLE001 - a tracker must never stop training
                log.warning("tracker %s not started: %s", entry_name, e)
                continue
            if tracker is not None:
                self.trackers.append(tracker)

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:  # noqa: BLE001 - switch the tracker off, keep training
                log.warning("tracker %s failed to %s (%s); it is off for the rest of this run", tracker.name, what, e)
                self.trackers.remove(tracker)

    def after_step(self, ctx: TrainContext) -> None:
        s = ctx.state
        if not self.trackers or not ctx.is_main or not s.step_done or (s.step % self.every_steps and s.step != 1):
            return
        values = {**scalars(ctx.losses(), "train/"), "train/lr": ctx.lr}
        self._each("log step scalars", lambda t: t.log_scalars(values, s.step))

    def after_epoch(self, ctx: TrainContext) -> None:
        if not self.trackers or not ctx.is_main:
            return
        s = ctx.state
        values = {**scalars(s.epoch_losses, "train_epoch/"), **scalars(s.metrics, "val/"), "epoch": float(s.epoch)}
        self._each("log epoch scalars", lambda t: t.log_scalars(values, s.step))

    def finish(self, metrics: dict[str, Any], pictures: list[Path], artifacts: dict[str, Path], step: int,
               status: str = "FINISHED") -> dict[str, str]:
        """Final metrics, pictures and files, then close; returns the trackers' references (run ids…)."""
        final = scalars(metrics, "final/")
        self._each("log final metrics", lambda t: t.log_scalars(final, step))
        self._each("log pictures", lambda t: t.log_pictures(pictures, step))
        self._each("log artifacts", lambda t: t.log_artifacts(artifacts))
        refs: dict[str, str] = {}
        for tracker in self.trackers:
            refs.update(tracker.reference())
        self._each("close", lambda t: t.close(status))
        return refs


def add_tags(refs: dict[str, str], tags: dict[str, str]) -> None:
    """Tags known only after the run closed (e.g. the model version it became); best effort."""
    from segpipe.tracking.mlflow_rest import tag_finished_run

    try:
        tag_finished_run(refs, tags)
    except Exception as e:  # noqa: BLE001 - tracking is never worth failing a job
        log.warning("could not tag the tracked run: %s", e)


# the built-in trackers register themselves on import
from segpipe.tracking import mlflow_rest, tensorboard  # noqa: E402, F401
