"""Regression tests for issue 8 ("what a hostile tester broke"), through the real API app on SQLite and
PostgreSQL (the ``client`` fixture runs both), one section per defect."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from segpipe.jobs.specs import load_spec
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.api.conftest import ADMIN, ANNOTATOR, ENGINEER, claimed_job, finish

# -- 1. config bombs -------------------------------------------------------------------------------


def billion_laughs(depth: int) -> str:
    lines = ['a0: "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    lines[0] = 'a0: &a0 "lol"'
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_refused_before_they_expand(client: TestClient) -> None:
    bomb = billion_laughs(9)
    assert len(bomb.encode()) < 1024  # the 674-byte kind of file that killed the API
    started = time.monotonic()
    r = client.post("/jobs", json={"kind": "train", "config_yaml": bomb}, headers=ENGINEER)
    assert r.status_code == 422, r.text
    assert "alias" in r.json()["error"] and "line 2" in r.json()["error"]
    assert time.monotonic() - started < 10  # nothing expanded (a generous bound; it answers in ms)
    small = client.post("/jobs", json={"kind": "train", "config_yaml": billion_laughs(5)}, headers=ENGINEER)
    assert small.status_code == 422 and "alias" in small.json()["error"]


def test_parsed_depth_is_limited_for_yaml_and_json(client: TestClient, stores: Stores, settings: Settings) -> None:
    deep: object = "x"
    for _ in range(300):
        deep = {"k": deep}
    r = client.post("/jobs", json={"kind": "train", "config": {"task": "binary", "deep": deep}}, headers=ENGINEER)
    assert r.status_code == 413 and "nested more than" in r.json()["error"], r.text
    r = client.post("/jobs", json={"kind": "train", "config_yaml": "x: " + "[" * 200 + "]" * 200}, headers=ENGINEER)
    assert r.status_code == 413, r.text
    many = "\n".join(f"k{i}: [{', '.join(['1'] * 50)}]" for i in range(2100))  # > 100k values, < 256 KB
    from segpipe.service import submit

    with pytest.raises(Exception, match="more than 100000 values"):
        submit(stores, None, settings.model_copy(update={"max_config_kb": 512.0}), "train", many)  # type: ignore[arg-type]


def test_json_nested_past_the_parser_is_a_4xx(client: TestClient) -> None:
    body = '{"kind": "train", "config": {"a": ' + "[" * 4000 + "]" * 4000 + "}}"
    assert len(body) < 16 * 1024  # under the body limit: the parser itself gives up
    r = client.post("/jobs", content=body.encode(), headers={**ENGINEER, "Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text


# -- 2/3. paths out of the roots: COCO file_names, symlinked files ----------------------------------


def _coco(path: Path, file_names: list[str]) -> Path:
    images = [{"id": i + 1, "file_name": n, "height": 8, "width": 8} for i, n in enumerate(file_names)]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    return path


@pytest.mark.parametrize("file_name", ["/etc/passwd", "../../outside.png", "sub/../../x.png"])
def test_predict_image_lists_cannot_leave_the_roots(client: TestClient, settings: Settings, file_name: str) -> None:
    ann = _coco(settings.roots[0] / "list.json", ["a.png", file_name])
    config = {"model": "model", "images": "images", "annotations": str(ann)}
    r = client.post("/jobs", json={"kind": "predict", "config": config}, headers=ENGINEER)
    assert r.status_code == 403, r.text
    assert "image 2" in r.json()["error"] and file_name in r.json()["error"]


def test_symlinked_files_in_a_data_root_are_refused(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((8, 8, 3), 255, np.uint8))
    (settings.roots[0] / "images" / "leak.png").symlink_to(secret)
    r = client.post("/jobs", json={"kind": "predict", "config": {"model": "model", "images": "images"}},
                    headers=ENGINEER)
    assert r.status_code == 403, r.text
    assert "leak.png" in r.json()["error"] and "symlink" in r.json()["error"]


# -- 4. augment.pipeline is stored without the default preset ----------------------------------------


def test_documented_pipeline_example_is_stored_so_the_worker_can_read_it(
    client: TestClient, settings: Settings, stores: Stores
) -> None:
    guide = (Path(__file__).parents[2] / "docs" / "getting-started" / "your-data.md").read_text()
    line = next(s for s in guide.splitlines() if s.strip().startswith("pipeline: {transform:"))
    augment = yaml.safe_load(line)
    from segpipe.data.synthetic import make_shapes_coco

    coco = make_shapes_coco(settings.roots[0] / "shapes", n_images=2, size=(32, 32), seed=1)
    config = {"task": "binary", "model": {"name": "unet", "encoder": "resnet18"}, "augment": augment,
              "data": {"train": {"images": str(coco.images), "annotations": str(coco.annotations)}}}
    r = client.post("/jobs", json={"kind": "train", "config": config}, headers=ENGINEER)
    assert r.status_code == 201, r.text
    stored = stores.jobs.get(r.json()["id"]).config
    spec = load_spec("train", stored)  # exactly what the worker does first
    assert spec.augment.pipeline == augment["pipeline"] and "preset" not in yaml.safe_load(stored)["augment"]


# -- 6. database and overflow errors from user input are 4xx JSON --------------------------------


@pytest.mark.parametrize(
    "url",
    ["/jobs/a%00b", "/jobs/a%00b/artifacts", "/jobs/a%00b/results", "/models/a%00b", "/models/a%00b/decisions",
     "/images/a%00b/masks", "/images/a/masks?job=a%00b", "/jobs?kind=train%00"],
)
def test_nul_bytes_are_422(client: TestClient, url: str) -> None:
    r = client.get(url, headers=ADMIN)
    assert r.status_code == 422 and "NUL" in r.json()["error"], r.text


def test_integers_past_64_bits_are_422(client: TestClient, stores: Stores) -> None:
    big = 2**70
    assert client.get(f"/jobs?offset={big}", headers=ADMIN).status_code == 422
    assert client.post("/models/m/promote", json={"version": big}, headers=ADMIN).status_code == 422
    assert client.post("/models/m/rollback", json={"to": big}, headers=ADMIN).status_code == 422
    assert client.post("/models/m/promote", json={"version": 2**40}, headers=ADMIN).status_code == 422


def test_true_is_not_version_1(client: TestClient, stores: Stores) -> None:
    stores.versions.register("m", "binary", "task: binary\n", metrics={})
    r = client.post("/models/m/promote", json={"version": True}, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert stores.versions.production("m") is None
    assert client.post("/models/m/promote", json={"version": 1}, headers=ADMIN).status_code == 200


def test_openapi_declares_errors_and_download_types(client: TestClient, stores: Stores) -> None:
    doc = client.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "422" in responses, (method, path)
            assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
            if path != "/health":
                assert {"401", "403"} <= set(responses), (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    submit = doc["components"]["schemas"]["JobSubmit"]
    assert submit["oneOf"] == [{"required": ["config"]}, {"required": ["config_yaml"]}]
    # a download's content type is one the document declares
    download = doc["paths"]["/jobs/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]["content"]
    job_id = claimed_job(stores, kind="train", config="task: binary\n")
    folder = stores.artifacts.job_dir(job_id, create=True)
    cv2.imwrite(str(folder / "plot.png"), np.zeros((4, 4, 3), np.uint8))
    (folder / "metrics.json").write_text("{}")
    (folder / "best.pt").write_bytes(b"\0")
    finish(stores, job_id)
    for name in ("plot.png", "metrics.json", "best.pt"):
        r = client.get(f"/jobs/{job_id}/artifacts/{name}", headers=ANNOTATOR)
        assert r.status_code == 200
        assert r.headers["content-type"].split(";")[0] in download, (name, r.headers["content-type"])


# -- 7. checks that only ran on the worker now run at submit -----------------------------------------


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"name": "no-such-model"}, "unknown model 'no-such-model'"),
        ({"name": "unet", "depth_of_field": 3}, "model.depth_of_field: unknown parameter"),
        ({"name": "unet", "encoder": "resnet9000"}, "unknown encoder 'resnet9000'"),
        ({"name": "unet", "encoder": "tu-no_such_net"}, "unknown timm model"),
        ({"name": "maskrcnn_resnet50_fpn"}, "does not do task 'binary'"),
    ],
)
def test_bad_model_sections_are_422_at_submit(client: TestClient, settings: Settings, model: dict, words: str) -> None:
    from segpipe.data.synthetic import make_shapes_coco

    coco = make_shapes_coco(settings.roots[0] / "s", n_images=1, size=(32, 32), seed=1)
    config = {"task": "binary", "model": model,
              "data": {"train": {"images": str(coco.images), "annotations": str(coco.annotations)}}}
    r = client.post("/jobs", json={"kind": "train", "config": config}, headers=ENGINEER)
    assert r.status_code == 422 and words in r.json()["error"], r.text


def test_refused_at_submit_missing_data_bad_refs(client: TestClient, stores: Stores) -> None:
    no_data = {"task": "binary", "model": {"name": "unet"}}
    r = client.post("/jobs", json={"kind": "train", "config": no_data}, headers=ENGINEER)
    assert r.status_code == 422 and "data" in r.json()["error"], r.text
    for ref, words in [("job:../../x", "not a valid job id"), ("job:nope", "no job nope"),
                       ("m@production", "no such version"), ("nowhere", "no such run directory")]:
        r = client.post("/jobs", json={"kind": "predict", "config": {"model": ref, "images": "images"}},
                        headers=ENGINEER)
        assert r.status_code == 422 and words in r.json()["error"], (ref, r.text)
    assert stores.jobs.list()[1] == 0  # nothing was queued


def test_405_allow_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.delete("/jobs", headers=ADMIN)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST" and "error" in r.json()
    assert client.put("/jobs/x", headers=ADMIN).headers["allow"] == "GET"
