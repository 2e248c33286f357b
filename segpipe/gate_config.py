"""``gate:`` of a retrain job or schedule entry: the configuration of the promotion gate (`segpipe.retrain.gate`
decides with it), and the metric values it compares. It lives in the config layer, beside
`segpipe.config`, because job specs (`segpipe.jobs.specs.RetrainSpec`), the schedule file and model
versions (`segpipe.jobs.versions`) use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from segpipe.config import Section

Mode = Literal["max", "min"]


class Guard(Section):
    """A metric that must not get worse by more than ``tolerance``."""

    tolerance: float = Field(ge=0, description="the largest allowed drop, in the metric's own units")
    mode: Mode = Field("max", description="max: higher is better; min: lower is better (losses, errors)")


class GateConfig(Section):
    """``gate:`` of a schedule entry. ``guards`` maps a metric to a tolerance (higher-is-better metric)
    or to ``{tolerance, mode}``."""

    metric: str = Field(description="the primary metric, as the evaluator names it (e.g. iou, miou, segm_AP)")
    mode: Mode = "max"
    min_delta: float = Field(0.0, ge=0, description="the least improvement of the primary metric that promotes")
    guards: dict[str, Guard] = Field(default_factory=dict)

    @field_validator("guards", mode="before")
    @classmethod
    def _plain_tolerances(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"tolerance": v} if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value


def finite_number(value: Any) -> float | None:
    """A metric value as a float; None for what is not a finite number (bools, lists, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of an evaluator's result (lists such as per-class IoU left out)."""
    return {k: float(v) for k, v in metrics.items() if finite_number(v) is not None}
