"""The Label Studio ML backend routes against the real app and store (no worker: stored predictions, and the
timeout path for images nobody predicted). The live Label Studio server test is tests/api/labelstudio/."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from segpipe.api.app import create_app
from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import rle_to_mask
from segpipe.masks.formats.label_studio import brush_rle_to_mask, labeling_config
from segpipe.stores import Stores
from tests.api.conftest import H, W, disc_mask, make_settings, production_cells_version, rows_for
from workers.celery_app import create_app as create_celery

ANN_BASIC = {"Authorization": "Basic " + base64.b64encode(b"label-studio:ann-token").decode()}
CLASSES = [(3, "cell"), (5, "nucleus")]


@pytest.fixture
def setup(tmp_path: Path, stores: Stores) -> dict[str, Any]:
    """The app on SQLite and PostgreSQL (the ``stores`` fixture), with cells@1 in production and a succeeded
    predict job of it that stored image ``batch/a``."""
    data = tmp_path / "data"
    (data / "batch").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(data / "batch" / "a.png")
    Image.fromarray(np.full((H, W, 3), 30, np.uint8)).save(data / "batch" / "new.png")
    schedule = tmp_path / "schedule.yaml"
    settings = make_settings(tmp_path, label_studio_files_root=data, label_studio_url="http://127.0.0.1:9",
                             ls_predict_timeout=0.5, ls_max_tasks=3, schedule=schedule)
    production_cells_version(stores)
    job = stores.jobs.create("predict", f"model: cells@production\nimages: {data / 'batch'}\n", "gpu")
    assert stores.jobs.claim(job.id, "w", lease_seconds=60).claimed
    stores.jobs.record_model(job.id, "cells", 1)
    rows = rows_for([disc_mask(20, 20, 9), disc_mask(30, 45, 6)], category_id=5)
    for row in rows:
        row["category_name"] = "nucleus"
    stores.predictions.write_image(job.id, "a", rows, uncertainty=0.25)
    assert stores.jobs.finish(job.id, "w", "succeeded")
    with TestClient(create_app(settings, stores, create_celery(settings))) as client:
        yield {"client": client, "stores": stores, "job": job.id, "rows": rows, "schedule": schedule, "data": data}


def _task(image: str, task_id: int = 1) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": image}}


def test_health_and_setup_answer_the_version(setup: dict[str, Any]) -> None:
    client = setup["client"]
    assert client.get("/ls/cells@production/health", headers=ANN_BASIC).json()["model_version"] == "cells@1"
    answer = client.post("/ls/cells@production/setup", headers=ANN_BASIC,
                         json={"project": "1.1700000000", "schema": labeling_config("instance", CLASSES)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "cells@1"


def test_setup_names_both_label_lists_when_they_differ(setup: dict[str, Any]) -> None:
    config = labeling_config("instance", [(1, "cell"), (2, "debris")])
    answer = setup["client"].post("/ls/cells@production/setup", headers=ANN_BASIC, json={"schema": config})
    assert answer.status_code == 422
    message = answer.json()["error"]
    assert "[cell, debris]" in message and "[cell, nucleus]" in message and "missing from the config: nucleus" in message
    assert answer.json()["detail"]["missing"] == ["nucleus"]


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ("<View><Image name='i' value='$image'/>", "not valid XML"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><View/>", "DOCTYPE"),
        ("<View><Image name='i' value='$image'/><Choices name='c' toName='i'><Choice value='cell'/></Choices></View>",
         "needs one of BrushLabels"),
    ],
)
def test_bad_labeling_configs_get_422(setup: dict[str, Any], schema: str, needle: str) -> None:
    answer = setup["client"].post("/ls/cells@production/setup", headers=ANN_BASIC, json={"schema": schema})
    assert answer.status_code == 422 and needle in answer.json()["error"]


def test_auth_and_unknown_models(setup: dict[str, Any]) -> None:
    client = setup["client"]
    assert client.post("/ls/cells@production/setup", json={"schema": ""}).status_code == 401
    bad = {"Authorization": "Basic " + base64.b64encode(b"x:wrong").decode()}
    answer = client.post("/ls/cells@production/setup", headers=bad, json={"schema": ""})
    assert answer.status_code == 401 and "Basic Authentication" in answer.json()["error"]
    assert client.get("/ls/cells@production/health", headers={"Authorization": "Bearer ann-token"}).status_code == 200
    missing = client.get("/ls/dogs@production/health", headers=ANN_BASIC)
    assert missing.status_code == 404 and "models: cells" in missing.json()["error"]
    assert client.get("/ls/cells/health", headers=ANN_BASIC).status_code == 404


def test_predict_answers_stored_masks_as_brush_regions(setup: dict[str, Any]) -> None:
    config = labeling_config("instance", CLASSES)
    answer = setup["client"].post("/ls/cells@production/predict", headers=ANN_BASIC, json={
        "tasks": [_task("/data/local-files/?d=batch/a.png")], "label_config": config, "project": "1.1"})
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert result["model_version"] == "cells@1" and result["segpipe"]["stored"] is True
    assert result["segpipe"]["job_id"] == setup["job"]
    regions = result["result"]
    assert [r["value"]["brushlabels"] for r in regions] == [["nucleus"], ["nucleus"]]
    assert [r["score"] for r in regions] == pytest.approx([0.9, 0.8])
    # the prediction's score, which Label Studio's data manager sorts by: 1 - the image's uncertainty
    assert result["score"] == pytest.approx(0.75)
    for region, row in zip(regions, setup["rows"], strict=True):
        np.testing.assert_array_equal(brush_rle_to_mask(region["value"]["rle"], H, W), rle_to_mask(row["rle"]))
        assert region["from_name"] == "label" and region["to_name"] == "image"


def test_predict_of_an_unpredicted_image_states_the_timeout(setup: dict[str, Any]) -> None:
    answer = setup["client"].post("/ls/cells@production/predict", headers=ANN_BASIC,
                                  json={"tasks": [_task("/data/local-files/?d=batch/new.png")]})
    assert answer.status_code == 503
    body = answer.json()
    assert "0.5 s timeout" in body["error"] and body["detail"]["timeout_seconds"] == 0.5
    job = setup["stores"].jobs.get(body["detail"]["job_id"])
    assert job.queue == "interactive" and job.kind == "predict"


@pytest.mark.parametrize(
    ("task", "status", "needle"),
    [
        ({"id": 7, "data": {"img": "x.png"}}, 422, "task 7: data has no 'image' key"),
        (_task("/data/local-files/?d=../../etc/passwd", 8), 403, "outside the allowed data roots"),
        (_task("http://evil.example/a.png", 9), 403, "segpipe fetches no other host"),
        (_task("/data/local-files/?d=batch/none.png", 10), 422, "not found"),
        (_task("/data/upload/1/a.png", 11), 422, "could not be fetched from Label Studio"),
        ({"id": 12, "data": "oops"}, 422, "task 12: has no 'data' object"),
    ],
)
def test_bad_tasks_get_json_4xx_naming_the_task(setup: dict[str, Any], task: dict[str, Any], status: int,
                                                needle: str) -> None:
    answer = setup["client"].post("/ls/cells@production/predict", headers=ANN_BASIC, json={"tasks": [task]})
    assert answer.status_code == status, answer.text
    assert needle in answer.json()["error"]


def test_predict_limits(setup: dict[str, Any]) -> None:
    client = setup["client"]
    many = [_task("/data/local-files/?d=batch/a.png", i) for i in range(4)]
    answer = client.post("/ls/cells@production/predict", headers=ANN_BASIC, json={"tasks": many})
    assert answer.status_code == 413 and "at most 3" in answer.json()["error"]
    assert client.post("/ls/cells@production/predict", headers=ANN_BASIC, json={"tasks": "no"}).status_code == 422
    big = setup["data"] / "batch" / "big.png"
    big.write_bytes(b"\x89PNG" + b"0" * (2 * 1024 * 1024))  # over the 1 MB limit of these settings
    answer = client.post("/ls/cells@production/predict", headers=ANN_BASIC,
                         json={"tasks": [_task("/data/local-files/?d=batch/big.png")]})
    assert answer.status_code == 413 and "over the 1048576-byte limit" in answer.json()["error"]


def test_webhook_signals_the_models_dataset(setup: dict[str, Any], tmp_path: Path) -> None:
    client, stores = setup["client"], setup["stores"]
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 4}, "annotation": {"id": 1, "result": []}}
    missing = client.post("/ls/cells@production/webhook", headers=ANN_BASIC, json=event)
    assert missing.status_code == 404 and "schedule" in missing.json()["error"]
    source = {"images": str(setup["data"] / "batch"), "annotations": str(tmp_path / "ann.json")}
    config = {"task": "instance", "data": {"train": source, "val": source}, "model": {"name": "maskrcnn"}}
    setup["schedule"].write_text(yaml.safe_dump({"debounce_seconds": 60, "models": {"cells": {
        "every": "24h", "config": config, "dataset": {"name": "cell-annotations", "paths": [str(setup["data"])]},
        "gate": {"metric": "segm_AP", "mode": "max"}}}}))
    ignored = client.post("/ls/cells@production/webhook", headers=ANN_BASIC, json={"action": "PROJECT_UPDATED"})
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    assert stores.retrain.get("cells") is None
    answer = client.post("/ls/cells@production/webhook", headers=ANN_BASIC, json=event)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "signalled" and body["dataset"] == "cell-annotations" and body["debounce_seconds"] == 60
    first = stores.retrain.get("cells").signalled_at
    assert first is not None
    client.post("/ls/cells@production/webhook", headers=ANN_BASIC, json={**event, "action": "ANNOTATION_UPDATED"})
    assert stores.retrain.get("cells").signalled_at == first, "signals within the window fold into the first"
    legacy = client.post("/ls/cells@production/train", headers=ANN_BASIC, json={"annotations": [], "project": "4.1"})
    assert legacy.status_code == 200 and legacy.json()["status"] == "signalled"
    assert client.post("/ls/cells@production/train", json={}).status_code == 401
    assert json.loads(json.dumps(body))["models"][0]["name"] == "cells"


# ------------------------------------------------------------------------------------------------
# box-to-mask: Label Studio's interactive request (a rectangle drawn with the smart tool)


def _rectangle(**value: Any) -> dict[str, Any]:
    return {"id": "r1", "type": "rectanglelabels", "from_name": "box_prompt", "to_name": "image",
            "original_width": W, "original_height": H, "image_rotation": 0, "origin": "manual",
            "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0,
                      "rectanglelabels": ["nucleus"]} | value}


def _interactive(client: TestClient, context: Any, model: str = "cells@production",
                 tasks: list[dict[str, Any]] | None = None) -> Any:
    """The request Label Studio forwards from its /api/ml/{pk}/interactive-annotating."""
    return client.post(f"/ls/{model}/predict", headers=ANN_BASIC, json={
        "tasks": tasks or [_task("/data/local-files/?d=batch/new.png")], "project": "1.1",
        "label_config": labeling_config("instance", CLASSES),
        "params": {"login": None, "password": None, "context": context}})


@pytest.mark.parametrize(
    ("context", "needle"),
    [
        ("a box", "context must be an object"),
        ({"result": []}, "context.result must be a non-empty list"),
        ({"result": [7]}, "context.result[0] must be an object"),
        ({"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 1}}]},
         "has no positive rectangle (region types: keypointlabels)"),
        ({"result": [_rectangle() | {"is_positive": False}]}, "has no positive rectangle"),
        ({"result": [_rectangle(width="wide")]}, "context.result[0].value.width must be a finite number"),
        ({"result": [_rectangle(height=0)]}, "width and height must be positive"),
        ({"result": [_rectangle(x=120)]}, "lies outside the image"),
        ({"result": [_rectangle(width=0.5, height=0.5)]}, "covers no whole pixel of the 64×48 image of task 1"),
        ({"result": [_rectangle() | {"to_name": "other"}]}, "the rectangle was drawn on 'other'"),
    ],
)
def test_malformed_interactive_contexts_get_422_naming_the_field(setup: dict[str, Any], context: Any,
                                                                  needle: str) -> None:
    answer = _interactive(setup["client"], context)
    assert answer.status_code == 422, answer.text
    assert needle in answer.json()["error"]
    assert not list(setup["stores"].jobs.list(kind="box-mask")[0]), "nothing was queued"


def test_box_to_mask_refuses_a_model_that_is_not_an_instance_model(setup: dict[str, Any]) -> None:
    stores = setup["stores"]
    run = stores.artifacts.root / "models" / "fg" / "run"
    run.mkdir(parents=True)
    CategoryMap(ids=(3, 5), names=("cell", "nucleus")).save(run / "categories.json")
    version = stores.versions.register("fg", "semantic", "{}", checkpoint="models/fg/run/best.pt")
    stores.versions.promote("fg", version.version)
    answer = _interactive(setup["client"], {"result": [_rectangle()]}, model="fg@production")
    assert answer.status_code == 422
    assert answer.json()["error"] == ("box-to-mask needs an instance-segmentation model (Mask R-CNN); fg@1 is a "
                                      "semantic model")
    two = [_task("/data/local-files/?d=batch/new.png", 1), _task("/data/local-files/?d=batch/a.png", 2)]
    answer = _interactive(setup["client"], {"result": [_rectangle()]}, tasks=two)
    assert answer.status_code == 422 and "carries one task, this one 2" in answer.json()["error"]


def test_a_drawn_box_queues_one_box_mask_job_on_the_interactive_queue(setup: dict[str, Any]) -> None:
    # no worker here: the answer is the timeout, naming the job; a worker's answer is tested live
    answer = _interactive(setup["client"], {"result": [_rectangle(rectanglelabels=["debris"]), _rectangle()]})
    assert answer.status_code == 503, answer.text
    assert "0.5 s timeout" in answer.json()["error"]
    job = setup["stores"].jobs.get(answer.json()["detail"]["job_id"])
    assert (job.kind, job.queue, job.model_name) == ("box-mask", "interactive", "cells")
    spec = yaml.safe_load(job.config)
    # the last rectangle is the prompt; its label is one of the model's classes, so the worker uses it
    assert spec["model"] == "cells@1" and spec["box"] == [10.0, 20.0, 30.0, 40.0] and spec["label"] == "nucleus"
    assert Path(spec["image"]).is_file() and Path(spec["image"]).is_relative_to(setup["stores"].artifacts.inbox)
    # that job waits unserved past the timeout: the next box is answered at once, and Label Studio's setup
    # check shows the backend in error, naming the job
    again = _interactive(setup["client"], {"result": [_rectangle()]})
    assert again.status_code == 503 and f"interactive job {job.id} for cells@1 is still queued" in again.json()["error"]
    assert len(setup["stores"].jobs.list(kind="box-mask")[0]) == 1
    check = setup["client"].post("/ls/cells@production/setup", headers=ANN_BASIC, json={"schema": ""})
    assert check.status_code == 503 and "no worker serves the 'interactive' queue" in check.json()["error"]


def test_the_score_keeps_every_digit_of_the_uncertainty() -> None:
    """Label Studio's data manager sorts by the score: rounded, a confident model's images would tie, and
    sort in Label Studio's task order instead of segpipe's ranking."""
    from segpipe.api.labelstudio.predictions import Found
    from segpipe.api.labelstudio.routes import prediction_score

    less_sure, surer = (Found("job", "key", [], 8, 8, cached=True, uncertainty=u) for u in (2.4e-7, 1.1e-7))
    assert prediction_score(less_sure, []) < prediction_score(surer, [])
