"""`segpipe submit`: a spec's paths are resolved by the loader's rule, whatever the job kind.

Relative paths are taken from the spec file's folder; object-store URIs and model references stay as
written, so a predict spec naming ``s3://…`` images is confined to the object-store root it lies in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.jobs.specs import PredictSpec, confine_spec, parse_spec
from segpipe.storage.uri import Uri

runner = CliRunner()


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What the CLI hands to the job service (no store or broker)."""
    import segpipe.service
    from segpipe.cli import service_cmds

    seen: list[tuple[str, dict[str, Any]]] = []

    class Job:
        id, queue = "j1", "gpu"

    def submit(stores: Any, celery_app: Any, settings: Any, kind: str, spec: dict[str, Any], **_: Any) -> Job:
        seen.append((kind, spec))
        return Job()

    monkeypatch.setattr(service_cmds, "_open", lambda: (None, None, None))
    monkeypatch.setattr(segpipe.service, "submit", submit)
    return seen


def test_predict_spec_keeps_uris_and_resolves_relative_paths(tmp_path: Path, submitted: list) -> None:
    spec_file = tmp_path / "specs" / "pred.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text("model: ../artifacts/exp\nimages: s3://bucket/data/photos\nannotations: s3://bucket/data/a.json\n")
    result = runner.invoke(app, ["submit", str(spec_file), "--kind", "predict"])
    assert result.exit_code == 0, result.output
    [(kind, spec)] = submitted
    assert kind == "predict"
    assert spec["images"] == "s3://bucket/data/photos" and spec["annotations"] == "s3://bucket/data/a.json"
    assert spec["model"] == str((tmp_path / "artifacts" / "exp").resolve())
    # what the service does next: the URIs lie inside an object-store root (no "only object-store roots")
    confined = confine_spec(parse_spec("predict", spec), [Uri("s3://bucket/data")], tmp_path / "artifacts")
    assert isinstance(confined, PredictSpec) and confined.images == "s3://bucket/data/photos"


def test_evaluate_spec_data_paths_resolve_like_a_train_config(tmp_path: Path, submitted: list) -> None:
    spec_file = tmp_path / "eval.yaml"
    spec_file.write_text("model: shapes@production\n"
                         "data: {train: {images: imgs, annotations: s3://b/a.json}, val: {root: classes}}\n")
    result = runner.invoke(app, ["submit", str(spec_file), "--kind", "evaluate", "split=train"])
    assert result.exit_code == 0, result.output
    [(_, spec)] = submitted
    assert spec["model"] == "shapes@production" and spec["split"] == "train"
    assert spec["data"]["train"]["images"] == str(tmp_path / "imgs")
    assert spec["data"]["train"]["annotations"] == "s3://b/a.json"
    assert spec["data"]["val"]["root"] == str(tmp_path / "classes")
