"""The job-kind vocabulary (`segpipe.job_kinds`) and the job layer's side of it (`segpipe.jobs.kinds`): every
kind names code that exists and has the right shape, capabilities answer what code used to ask by name,
and `preflight` runs the submitted kind's check."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segpipe import job_kinds
from segpipe.config import JobConfig, Section
from segpipe.errors import ConfigError
from segpipe.jobs import kinds
from segpipe.jobs.preflight import check_evaluate, check_predict, check_train, preflight
from segpipe.jobs.specs import BoxMaskSpec, JobSpec, PredictSpec, parse_spec
from segpipe.paths import active_roots
from segpipe.settings import Settings


@pytest.mark.parametrize("name", job_kinds.submittable())
def test_every_submittable_kind_has_a_submit_time_check(name: str) -> None:
    # a spec that people submit is untrusted: at least its model reference or data must be checked
    check = kinds.preflight_check(name)
    assert callable(check)
    assert list(inspect.signature(check).parameters)[1:] in (["stores"], ["_stores"])


def test_the_built_in_kinds_resolve_to_their_own_code() -> None:
    assert kinds.runner("train").__qualname__ == "run_train"
    assert kinds.runner("retrain").__module__ == "segpipe.retrain.job"
    assert kinds.runner("predict-shard").__module__ == "segpipe.jobs.sharding.runner"
    assert kinds.spec_model("train") is None  # a whole JobConfig
    assert kinds.spec_model("predict") is PredictSpec
    assert kinds.spec_model("box-mask") is BoxMaskSpec
    assert kinds.preflight_check("train") is check_train
    assert kinds.preflight_check("evaluate") is check_evaluate
    assert kinds.preflight_check("predict") is check_predict
    assert kinds.preflight_check("retrain") is None  # queued by segpipe itself, never submitted


@pytest.mark.parametrize("name", job_kinds.names())
def test_every_kind_names_a_runner_taking_a_run_and_a_spec_and_a_spec_model(name: str) -> None:
    assert list(inspect.signature(kinds.runner(name)).parameters) in (["run", "spec"], ["run", "shard"])
    model = kinds.spec_model(name)
    assert model is None or (issubclass(model, JobSpec) and issubclass(model, Section))
    assert job_kinds.get(name).queue in job_kinds.QUEUES
    assert job_kinds.get(name).produces <= set(job_kinds.CAPABILITIES)


def test_capabilities_say_what_each_built_in_kind_produces() -> None:
    assert job_kinds.with_capability(job_kinds.MODEL) == ("train", "retrain")
    assert job_kinds.with_capability(job_kinds.PREDICTIONS) == ("predict",)
    assert job_kinds.with_capability(job_kinds.INBOX) == ("predict", "box-mask")
    assert job_kinds.with_capability(job_kinds.PART) == ("predict-shard", "train-node")
    assert job_kinds.has("train", job_kinds.MODEL) and not job_kinds.has("evaluate", job_kinds.MODEL)
    assert not job_kinds.has("a-kind-from-a-newer-version", job_kinds.MODEL)  # an unknown row is asked, not refused


def test_a_kind_with_an_unknown_queue_or_capability_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="unknown queue 'tpu'"):
        job_kinds.register(job_kinds.JobKind("x", None, ("m", "f"), queue="tpu"))
    with pytest.raises(ValueError, match=r"unknown capabilities \['weights'\]"):
        job_kinds.register(job_kinds.JobKind("x", None, ("m", "f"), produces=frozenset({"weights"})))
    assert "x" not in job_kinds.names()


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown job kind 'fit'; known: train, evaluate, predict"):
        parse_spec("fit", {})
    assert isinstance(parse_spec("train", {"task": "binary", "model": {"name": "unet"}}), JobConfig)


def test_the_vocabulary_imports_neither_the_job_layer_nor_torch() -> None:
    code = ("import sys, segpipe.job_kinds as k; k.names(); "
            "print(sorted(m for m in sys.modules if m.startswith(('segpipe.jobs', 'segpipe.stores', 'torch', "
            "'sqlalchemy', 'pydantic'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_preflight_runs_the_kinds_registered_check_on_the_stored_spec_inside_the_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(home=tmp_path / "home", data_roots=[data], artifact_root=tmp_path / "artifacts")
    seen: list[tuple[Any, Any, Any]] = []
    monkeypatch.setattr("segpipe.jobs.preflight.check_predict",
                        lambda spec, stores: seen.append((spec, stores, active_roots())))
    stores: Any = object()  # the check receives the stores as given; this one needs none
    spec = PredictSpec(model="job:abc", images=data / "images")

    stored = preflight("predict", spec, stores, settings)

    # the data roots, then the artifact root's snapshots folder (every job may read a dataset snapshot)
    assert seen == [(stored, stores, (data.resolve(), (tmp_path / "artifacts" / "snapshots").resolve()))]
    assert stored is not spec and stored == spec  # read back from its stored text, equal to what was sent
    assert active_roots() is None  # the confinement ends with the check


def test_kinds_with_the_inbox_capability_say_which_folder_they_read() -> None:
    assert PredictSpec(model="m", images=Path("/inbox/abc")).input_folder() == Path("/inbox/abc")
    box = BoxMaskSpec(model="m", image=Path("/inbox/def/image.png"), box=(1, 2, 3, 4))
    assert box.input_folder() == Path("/inbox/def")
    assert dataclasses.is_dataclass(job_kinds.get("box-mask"))
