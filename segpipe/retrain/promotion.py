"""Promotions by hand and rollbacks: each one changes the production version and leaves a decision row.

Predict jobs that name ``NAME@production`` resolve it when they start, so they follow both at once.
Label Studio projects whose segpipe backend follows ``NAME@production`` are retitled afterwards
(`tell_label_studio`), as a gate's promotion retitles its bound project: the data manager sorts by the
prediction scores of the version the backend is titled with.
"""

from __future__ import annotations

import logging

from segpipe.errors import ConfigError, NotFoundError, SegpipeError
from segpipe.settings import Settings
from segpipe.stores import PromotionDecision, Stores

log = logging.getLogger("segpipe.promotion")


MAX_REASON = 1000  # characters of a person's reason kept with a decision


def promote_by_hand(stores: Stores, name: str, version: int, *, by: str | None = None,
                    reason: str | None = None) -> PromotionDecision:
    """Make ``version`` production (the previous one is archived) and record who did it and why."""
    current = stores.versions.production(name)
    who = f" by {by}" if by else ""
    if current is not None and current.version == version:
        text = f"promoted by hand{who} (it was already production)"
    else:
        text = f"promoted by hand{who}, replacing {_v(current.version if current else None)}"
    return stores.decisions.record(name, version, "promoted", text + _because(reason), source="manual",
                                   decided_by=by)


def rollback(stores: Stores, name: str, *, to: int | None = None, by: str | None = None,
             reason: str | None = None) -> PromotionDecision:
    """Make an earlier version production again: ``to``, or else the newest older version that was
    production before (`DecisionStore.rollback_target`). `ConfigError` says why when there is none.
    ``reason``: a person's words, kept with the decision."""
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
        name, target, "promoted",
        f"rolled back{who} from version {current.version} to version {target}" + _because(reason),
        source="rollback", decided_by=by, expect_production=current.version, check_production=True,
    )
    if decision.outcome != "promoted":
        raise ConfigError(f"model {name!r}: rollback not applied: {decision.reason}")
    return decision


def tell_label_studio(settings: Settings, stores: Stores, name: str) -> list[str]:
    """Retitle every Label Studio backend that follows ``NAME@production`` with the production version;
    what changed, a line per backend ([] without a configured Label Studio). The production change stands
    whatever Label Studio answers: a failure is logged and returned as a line."""
    production = stores.versions.production(name)
    if production is None or not settings.label_studio_url or not settings.label_studio_token:
        return []
    from segpipe.labelstudio.client import LabelStudioClient
    from segpipe.labelstudio.connect import follow_version_everywhere

    label = f"{name}@{production.version}"
    try:
        with LabelStudioClient(settings.label_studio_url, settings.label_studio_token) as ls:
            changed = follow_version_everywhere(ls, name, label)
    except SegpipeError as e:
        log.warning("%s is production, but Label Studio backends following %s@production were not retitled: %s",
                    label, name, e)
        return [f"Label Studio not updated: {e}"]
    lines = [f"Label Studio project {pid}: {step}" for pid, step in changed]
    for line in lines:
        log.info("%s", line)
    return lines


def _because(reason: str | None) -> str:
    if reason is None or not reason.strip():
        return ""
    if len(reason) > MAX_REASON:
        raise ConfigError(f"the reason is {len(reason)} characters; at most {MAX_REASON} are kept")
    return f": {' '.join(reason.split())}"


def cli_actor() -> str:
    """Who acts from the command line: the operating-system user, marked as a CLI action."""
    import getpass

    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def _v(version: int | None) -> str:
    return "no production version" if version is None else f"version {version}"
