"""MLflow tracking against a real MLflow server (its own venv, SQLite backend, on loopback): the run
is found with its params, per-epoch metrics, artifacts and tags, and a resumed training continues it.
Tracking is never needed to train: an unreachable server leaves the run untracked, not failed."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from segpipe.data.synthetic import make_class_folders
from segpipe.engine.runner import train
from segpipe.tracking import add_tags
from tests.engine.runs import job_config, same_split


def _get(url: str, endpoint: str, **query: Any) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}", timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def _config(root: Path, name: str, epochs: int):
    data = make_class_folders(root / "data", per_class=4, size=(32, 32))
    config = job_config("classification", same_split({"root": str(data)}),
                        {"name": "cnn_small", "channels": [8], "hidden": 16}, root / "run",
                        epochs=epochs, batch_size=4, image_size=32, lr=0.003)
    return config.model_copy(update={"name": name})


@pytest.mark.integration
def test_training_is_tracked_in_mlflow(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGPIPE_MLFLOW_TRACKING_URI", mlflow_server)
    name = f"shapes-{uuid.uuid4().hex[:6]}"
    result = train(_config(tmp_path, name, epochs=2), show_progress=False, tracking_tags={"segpipe.job_id": "job-123"})
    assert result.tracking["mlflow_uri"] == mlflow_server
    add_tags(result.tracking, {"segpipe.model_version": f"{name}@1"})

    experiment = _get(mlflow_server, "experiments/get-by-name", experiment_name=name)["experiment"]
    runs = _post(mlflow_server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 1 and runs[0]["info"]["run_id"] == result.tracking["mlflow_run_id"]
    run = runs[0]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "job-123"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["segpipe.job_id"] == "job-123" and tags["segpipe.model_version"] == f"{name}@1"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["task"] == "classification" and params["model.name"] == "cnn_small"
    assert params["train.lr"] == "0.003" and params["train.epochs"] == "2" and params["name"] == name

    val = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r["split"] == "val"]
    history = _get(mlflow_server, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="val/accuracy")
    assert [(m["step"], round(m["value"], 6)) for m in history["metrics"]] == [(r["step"], round(r["accuracy"], 6)) for r in val]
    epochs = _get(mlflow_server, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="epoch")["metrics"]
    assert [m["value"] for m in epochs] == [1.0, 2.0]
    assert _get(mlflow_server, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="train/loss")["metrics"]

    listed = _get(mlflow_server, "artifacts/list", run_id=run["info"]["run_id"])
    assert {"config.yaml", "metrics.json", "metrics.jsonl", "categories.json", "plots"} <= {
        f["path"] for f in listed["files"]}
    plots = _get(mlflow_server, "artifacts/list", run_id=run["info"]["run_id"], path="plots")
    assert {"plots/curves.png", "plots/val_overlays.png", "plots/confusion.png"} <= {f["path"] for f in plots["files"]}
    remote = urllib.parse.urlparse(run["info"]["artifact_uri"]).path.strip("/")
    with urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow-artifacts/artifacts/{remote}/plots/curves.png") as r:
        assert r.read() == (result.run_dir / "plots" / "curves.png").read_bytes()

    # resuming the same run directory with more epochs continues the same MLflow run
    more = train(_config(tmp_path, name, epochs=3), resume=True, show_progress=False)
    assert more.tracking["mlflow_run_id"] == run["info"]["run_id"]
    epochs = _get(mlflow_server, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="epoch")["metrics"]
    assert [m["value"] for m in epochs] == [1.0, 2.0, 3.0]
    resumed = _get(mlflow_server, "runs/get", run_id=run["info"]["run_id"])["run"]
    assert {p["key"]: p["value"] for p in resumed["data"]["params"]}["train.epochs"] == "2"  # params never change
    assert {t["key"]: t["value"] for t in resumed["data"]["tags"]}["segpipe.resumed_with"] == "train.epochs=3"


def test_an_unreachable_tracking_server_does_not_stop_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    monkeypatch.setenv("SEGPIPE_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed}")
    result = train(_config(tmp_path, "offline", epochs=1), show_progress=False)
    assert result.metrics and "mlflow_run_id" not in result.tracking
    assert result.tracking["tensorboard_logdir"] == str(result.run_dir)
    assert any("tracker mlflow not started" in r.getMessage() for r in caplog.records)
