"""The scalar metrics each task's evaluation reports, by name: what a gate or a monitor may compare.

The names are the task traits' ``metrics`` (`segpipe.task_kinds`: no torch, no evaluator imports), so a
schedule or a config can be checked where it is loaded. ``tests/evaluation/test_metric_names.py``
runs every evaluator and adapter and fails if this
table and what they report drift apart.
"""

from __future__ import annotations

import re

from segpipe.task_kinds import TRAITS

SCALAR_METRICS: dict[str, tuple[str, ...]] = {name: kind.metrics for name, kind in TRAITS.items()}
# Reported only under some settings: top-k accuracy needs at least k classes.
_PATTERNS: dict[str, tuple[str, ...]] = {name: kind.metric_patterns for name, kind in TRAITS.items()}


def is_metric(task: str, name: str) -> bool:
    """Whether ``task``'s evaluation reports a scalar metric called ``name``."""
    return name in SCALAR_METRICS.get(task, ()) or any(re.fullmatch(p, name) for p in _PATTERNS.get(task, ()))


def known_metrics(task: str) -> list[str]:
    """The names to list when a metric is not one of them."""
    return list(SCALAR_METRICS.get(task, ())) + [p.replace(r"\d+", "K") for p in _PATTERNS.get(task, ())]
