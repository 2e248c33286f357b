"""Promotions by hand and rollbacks: each one changes the production version and leaves a decision row.

Predict jobs that name ``NAME@production`` resolve it when they start, so they follow both at once.
"""

from __future__ import annotations

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores import PromotionDecision, Stores


def promote_by_hand(stores: Stores, name: str, version: int, *, by: str | None = None) -> PromotionDecision:
    """Make ``version`` production (the previous one is archived) and record who did it."""
    current = stores.versions.production(name)
    who = f" by {by}" if by else ""
    if current is not None and current.version == version:
        reason = f"promoted by hand{who} (it was already production)"
    else:
        reason = f"promoted by hand{who}, replacing {_v(current.version if current else None)}"
    return stores.decisions.record(name, version, "promoted", reason, source="manual", decided_by=by)


def rollback(stores: Stores, name: str, *, to: int | None = None, by: str | None = None) -> PromotionDecision:
    """Make an earlier version production again: ``to``, or else the newest older version that was
    production before (`DecisionStore.rollback_target`). `ConfigError` says why when there is none."""
    current = stores.versions.production(name)
    if current is None:
        if not stores.versions.list(name):
            raise NotFoundError(f"model {name!r} has no versions")
        raise ConfigError(f"model {name!r} has no production version to roll back from")
    target = to if to is not None else stores.decisions.rollback_target(name)
    if target is None:
        raise ConfigError(
            f"model {name!r}: no version before {current.version} was ever production; "
            f"pick one with --to VERSION (see `segpipe models {name}`)"
        )
    if target == current.version:
        raise ConfigError(f"model {name!r}: version {target} is production already")
    stores.versions.get(name, target)  # NotFoundError names a version that does not exist
    who = f" by {by}" if by else ""
    decision = stores.decisions.record(
        name, target, "promoted", f"rolled back{who} from version {current.version} to version {target}",
        source="rollback", decided_by=by, expect_production=current.version, check_production=True,
    )
    if decision.outcome != "promoted":
        raise ConfigError(f"model {name!r}: rollback not applied: {decision.reason}")
    return decision


def _v(version: int | None) -> str:
    return "no production version" if version is None else f"version {version}"
