"""The promotion gate: should a retrained candidate replace the production version?

A pure function of two metric dicts measured on the same validation set in the same job
(`decide`); the caller stores what it returns. The rules:

- no production version yet → the candidate is promoted (the first version of a model);
- the primary ``metric`` must improve by at least ``min_delta`` (``mode: max`` — higher is better —
  or ``min``); ``min_delta: 0`` accepts a tie;
- every guard metric may get worse by at most its tolerance (absolute, in the metric's own units);
- a metric that is missing from either side, or not a finite number, fails its check.

Promoted only when every check passes; the reason names each failed check with its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from segpipe.gate_config import GateConfig, Mode, finite_number, scalar_metrics


@dataclass(frozen=True)
class Check:
    """One compared metric. ``change`` is the improvement (positive = better, in the metric's mode);
    ``limit`` is what the check needed: change ≥ limit (primary: +min_delta; guard: -tolerance)."""

    metric: str
    role: Literal["primary", "guard"]
    mode: Mode
    candidate: float | None
    production: float | None
    change: float | None
    limit: float
    passed: bool

    def describe(self) -> str:
        if self.candidate is None or self.production is None or self.change is None:
            side = "candidate" if self.candidate is None else "production"
            return f"{self.metric} is missing or not a number for the {side}"
        numbers = f"{self.metric} {self.candidate:.4f} vs {self.production:.4f} ({self.change:+.4f})"
        if self.role == "primary":
            verdict = "≥" if self.passed else "<"
            return f"{numbers} {verdict} min_delta {self.limit:+.4f}"
        verdict = "within" if self.passed else "beyond"
        return f"{numbers} {verdict} tolerance {-self.limit:.4f}"


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["promoted", "rejected"]
    reason: str
    checks: tuple[Check, ...]

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def checks_as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.checks]


def decide(gate: GateConfig, candidate: Mapping[str, Any], production: Mapping[str, Any] | None) -> Verdict:
    """Compare ``candidate`` with ``production`` metrics (None: there is no production version)."""
    if production is None:
        value = finite_number(candidate.get(gate.metric))
        shown = f" ({gate.metric} {value:.4f})" if value is not None else ""
        return Verdict("promoted", f"no production version yet: the first version is promoted{shown}", ())
    checks = [_check(gate.metric, "primary", gate.mode, gate.min_delta, candidate, production)]
    for name, guard in gate.guards.items():
        checks.append(_check(name, "guard", guard.mode, -guard.tolerance, candidate, production))
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "; ".join(c.describe() for c in failed)
        if any(c.metric not in candidate for c in failed):  # most likely a misspelt metric name
            reason += f" (the evaluation gave: {', '.join(sorted(scalar_metrics(candidate)))})"
        return Verdict("rejected", reason, tuple(checks))
    return Verdict("promoted", "; ".join(c.describe() for c in checks), tuple(checks))


def _check(
    metric: str, role: Literal["primary", "guard"], mode: Mode, limit: float,
    candidate: Mapping[str, Any], production: Mapping[str, Any],
) -> Check:
    cand, prod = finite_number(candidate.get(metric)), finite_number(production.get(metric))
    if cand is None or prod is None:
        return Check(metric, role, mode, cand, prod, None, limit, False)
    change = cand - prod if mode == "max" else prod - cand
    # Round away float noise (0.1 + 0.2 style) so a change equal to the limit passes as written.
    return Check(metric, role, mode, cand, prod, change, limit, round(change - limit, 12) >= 0)
