"""The job-kind registry carries each kind's submit-time check, and `preflight` runs the submitted kind's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from segpipe import job_kinds
from segpipe.jobs.preflight import preflight
from segpipe.jobs.specs import PredictSpec
from segpipe.paths import active_roots
from segpipe.settings import Settings


@pytest.mark.parametrize("name", job_kinds.submittable())
def test_every_submittable_kind_has_a_submit_time_check(name: str) -> None:
    # a spec that people submit is untrusted: at least its model reference or data must be checked
    assert job_kinds.get(name).preflight is not None


def test_preflight_runs_the_kinds_registered_check_on_the_stored_spec_inside_the_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(home=tmp_path / "home", data_roots=[data], artifact_root=tmp_path / "artifacts")
    seen: list[tuple[Any, Any, Any]] = []
    kind = dataclasses.replace(
        job_kinds.get("predict"), preflight=lambda spec, stores: seen.append((spec, stores, active_roots()))
    )
    real_get = job_kinds.get
    monkeypatch.setattr(job_kinds, "get", lambda name: kind if name == "predict" else real_get(name))
    stores: Any = object()  # the check receives the stores as given; this one needs none
    spec = PredictSpec(model="job:abc", images=data / "images")

    stored = preflight("predict", spec, stores, settings)

    # the data roots, then the artifact root's snapshots folder (every job may read a dataset snapshot)
    assert seen == [(stored, stores, (data.resolve(), (tmp_path / "artifacts" / "snapshots").resolve()))]
    assert active_roots() is None  # the confinement ends with the check
