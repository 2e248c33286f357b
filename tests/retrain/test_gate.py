from __future__ import annotations

import math

import pytest

from segpipe.gate_config import GateConfig, scalar_metrics
from segpipe.retrain.gate import decide


def gate(**kw) -> GateConfig:
    return GateConfig.model_validate({"metric": "iou", **kw})


def test_the_first_version_is_promoted():
    v = decide(gate(min_delta=0.5), {"iou": 0.1}, None)
    assert v.promoted and v.checks == ()
    assert v.reason == "no production version yet: the first version is promoted (iou 0.1000)"


@pytest.mark.parametrize(
    ("candidate", "production", "min_delta", "promoted"),
    [
        (0.80, 0.70, 0.05, True),
        (0.74, 0.70, 0.05, False),  # improved, but by less than min_delta
        (0.75, 0.70, 0.05, True),  # exactly min_delta (float noise must not reject it)
        (0.3, 0.1 + 0.2, 0.0, True),  # a tie passes min_delta 0
        (0.69, 0.70, 0.0, False),
    ],
)
def test_primary_metric_must_improve_by_min_delta(candidate, production, min_delta, promoted):
    v = decide(gate(min_delta=min_delta), {"iou": candidate}, {"iou": production})
    assert v.promoted is promoted
    (check,) = v.checks
    assert check.role == "primary" and check.change == pytest.approx(candidate - production)


def test_min_mode_means_lower_is_better():
    g = gate(metric="pixel_error", mode="min", min_delta=0.01)
    assert decide(g, {"pixel_error": 0.05}, {"pixel_error": 0.10}).promoted
    rejected = decide(g, {"pixel_error": 0.10}, {"pixel_error": 0.05})
    assert not rejected.promoted
    assert rejected.reason == "pixel_error 0.1000 vs 0.0500 (-0.0500) < min_delta +0.0100"


def test_a_guard_that_falls_beyond_its_tolerance_rejects():
    g = gate(min_delta=0.01, guards={"dice": 0.02, "pixel_error": {"tolerance": 0.01, "mode": "min"}})
    prod = {"iou": 0.60, "dice": 0.75, "pixel_error": 0.05}
    ok = decide(g, {"iou": 0.65, "dice": 0.74, "pixel_error": 0.055}, prod)
    assert ok.promoted and [c.metric for c in ok.checks] == ["iou", "dice", "pixel_error"]
    assert "dice 0.7400 vs 0.7500 (-0.0100) within tolerance 0.0200" in ok.reason
    bad = decide(g, {"iou": 0.65, "dice": 0.70, "pixel_error": 0.07}, prod)
    assert not bad.promoted
    assert bad.reason == ("dice 0.7000 vs 0.7500 (-0.0500) beyond tolerance 0.0200; "
                          "pixel_error 0.0700 vs 0.0500 (-0.0200) beyond tolerance 0.0100")
    assert [c.passed for c in bad.checks] == [True, False, False]
    assert bad.checks_as_dicts()[1]["limit"] == -0.02


def test_missing_or_non_finite_metrics_fail_their_check():
    missing = decide(gate(), {"miou": 0.9, "dice": 0.8}, {"iou": 0.5})
    assert not missing.promoted
    assert missing.reason == ("iou is missing or not a number for the candidate "
                              "(the evaluation gave: dice, miou)")
    nan = decide(gate(guards={"dice": 0.1}), {"iou": 0.9, "dice": math.nan}, {"iou": 0.5, "dice": 0.5})
    assert not nan.promoted and "dice is missing or not a number for the candidate" in nan.reason
    no_prod = decide(gate(), {"iou": 0.9}, {"dice": 0.5})
    assert "for the production" in no_prod.reason


def test_gate_config_is_validated():
    with pytest.raises(ValueError, match="min_delta"):
        gate(min_delta=-1)
    with pytest.raises(ValueError, match="tolerance"):
        gate(guards={"dice": -0.1})
    with pytest.raises(ValueError, match="mode"):
        gate(mode="up")


def test_scalar_metrics_keeps_finite_numbers():
    metrics = {"iou": 0.5, "n": 3, "flag": True, "per_class": [0.1, 0.2], "bad": math.inf, "name": "x"}
    assert scalar_metrics(metrics) == {"iou": 0.5, "n": 3.0}
