"""The job layer's side of a job kind: the spec model, runner and submit-time check its vocabulary entry
(`segpipe.job_kinds`) names, imported when first needed.

A runner is imported only when a job of its kind runs, so parsing or checking a spec (the API, the CLI)
never imports what the runners import (the engine, torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from segpipe import job_kinds

if TYPE_CHECKING:
    from segpipe.config import Section
    from segpipe.jobs.run import JobRun
    from segpipe.jobs.specs import Spec
    from segpipe.stores import Stores

# fn(run, spec) -> artifacts (name → relative path of the files it wrote)
Runner = Callable[["JobRun", Any], dict[str, str]]
# check(stored_spec, stores): raises ConfigError naming the key (see `segpipe.jobs.preflight`)
Preflight = Callable[[Any, "Stores"], None]


def _load(ref: job_kinds.CodeRef) -> Any:
    module, attribute = ref
    return getattr(importlib.import_module(module), attribute)


def spec_model(kind: str) -> type[Section] | None:
    """The pydantic model of `kind`'s document; None for a full job config (`JobConfig`)."""
    ref = job_kinds.get(kind).spec
    return None if ref is None else _load(ref)


def runner(kind: str) -> Runner:
    return _load(job_kinds.get(kind).runner)


def preflight_check(kind: str) -> Preflight | None:
    ref = job_kinds.get(kind).preflight
    return None if ref is None else _load(ref)


def run(kind: str, job_run: JobRun, spec: Spec) -> dict[str, str]:
    """Run one job of `kind` (its spec already parsed); returns its artifacts."""
    return runner(kind)(job_run, spec)
