"""The retrain job kind in-process (`segpipe.jobs.execute.run_job`, no queue): train, register, evaluate
both versions on the fixed validation set, decide. The queue, a real worker and the schedule are
exercised together in tests/integration/test_retrain.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segpipe.data.dataset_hash import dataset_hash
from segpipe.jobs.execute import run_job
from segpipe.jobs.run import JobRun
from segpipe.jobs.specs import dump_spec
from segpipe.jobs.versions import checkpoint_path
from segpipe.retrain.job import run_retrain
from segpipe.stores import Stores
from tests.retrain.conftest import make_data, schedule_for, tiny_config

pytestmark = pytest.mark.slow  # three tiny trainings: ~20 s on an idle 2-core machine

@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data" / "shapes", n_train=4, size=32)


def test_train_then_retrain_registers_versions_and_records_the_decision(stores: Stores, settings, data, tmp_path):
    # A plain training job with a model name registers a candidate version.
    config = {**tiny_config(data), "name": "shapes", "output_dir": str(tmp_path / "ignored")}
    train_job = stores.jobs.create("train", yaml.safe_dump(config), queue="gpu", model_name="shapes")
    assert run_job(train_job.id, stores=stores, settings=settings, owner="w") == "succeeded"
    v1 = stores.versions.get("shapes", 1)
    assert (v1.stage, v1.job_id, v1.task, v1.parent_version) == ("candidate", train_job.id, "binary", None)
    assert v1.dataset_hash == dataset_hash([data / "train/images", data / "train/masks", data / "val/images",
                                            data / "val/masks"])
    assert "iou" in v1.metrics and yaml.safe_load(v1.config)["name"] == "shapes"
    assert checkpoint_path(v1, stores) == stores.artifacts.job_dir(train_job.id) / "run" / "best.pt"
    assert stores.jobs.get(train_job.id).progress["model"] == "shapes@1"

    # A retraining with no production version: its candidate is the first production version.
    entry = schedule_for(data, tmp_path, fine_tune_from_production=True).get("shapes")
    job = stores.jobs.create("retrain", dump_spec(entry.retrain_spec("test")), queue="gpu", model_name="shapes")
    assert run_job(job.id, stores=stores, settings=settings, owner="w") == "succeeded"
    v2 = stores.versions.get("shapes", 2)
    assert (v2.stage, v2.job_id, v2.parent_version) == ("production", job.id, None)
    (decision,) = stores.decisions.list("shapes")
    assert (decision.version, decision.outcome, decision.source, decision.job_id) == (2, "promoted", "gate", job.id)
    assert decision.reason.startswith("no production version yet") and "iou" in decision.candidate_metrics
    finished = stores.jobs.get(job.id)
    assert finished.progress["decision"] == "promoted" and finished.progress["model"] == "shapes@2"
    assert finished.progress["dataset_hash"] == v2.dataset_hash == v1.dataset_hash  # same data as the train job
    assert json.loads((stores.artifacts.job_dir(job.id) / "decision.json").read_text())["outcome"] == "promoted"
    assert {"decision.json", "best.pt", "metrics.json"} <= set(finished.artifacts)

    # Retrain again, fine-tuning from v2, with a gate no candidate can pass: rejected with the numbers.
    entry = schedule_for(data, tmp_path, fine_tune_from_production=True,
                         gate={"metric": "iou", "min_delta": 1.5}).get("shapes")
    job3 = stores.jobs.create("retrain", dump_spec(entry.retrain_spec("test")), queue="gpu", model_name="shapes")
    assert run_job(job3.id, stores=stores, settings=settings, owner="w") == "succeeded"
    v3 = stores.versions.get("shapes", 3)
    assert (v3.stage, v3.parent_version) == ("candidate", 2)
    trained = yaml.safe_load(v3.config)
    assert trained["model"]["weights"] == str(checkpoint_path(v2, stores))  # fine-tuned from production
    d3 = stores.decisions.for_version("shapes", 3)
    assert (d3.outcome, d3.previous_version, d3.metric) == ("rejected", 2, "iou")
    assert d3.reason.startswith("iou ") and "< min_delta +1.5000" in d3.reason
    assert set(d3.production_metrics) == set(d3.candidate_metrics) and d3.checks[0]["role"] == "primary"
    assert stores.versions.production("shapes").version == 2

    # Run again (a worker died after deciding): no second version, no second decision.
    run = JobRun(job3.id, "retrain", "w2", stores, settings)
    run_retrain(run, entry.retrain_spec("test"))
    assert len(stores.versions.list("shapes")) == 3 and len(stores.decisions.list("shapes")) == 2
