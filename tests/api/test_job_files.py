from __future__ import annotations

import json
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from pycocotools.coco import COCO

from segpipe.api.routes.job_files import chunked
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, ENGINEER, H, W, box_mask, claimed_job, disc_mask, finish, rows_for


def _job_with_artifacts(stores: Stores) -> str:
    job_id = claimed_job(stores, kind="train", config="task: instance\n")
    best = stores.artifacts.path_for(job_id, "run/best.pt")
    best.write_bytes(b"weights" * 10)
    stores.artifacts.register(job_id, "best.pt", best)
    for name in ("a.png", "b.png"):
        stores.artifacts.path_for(job_id, f"predictions/masks/{name}").write_bytes(b"png")
    stores.jobs.add_artifacts(job_id, {"masks": "predictions/masks", "gone": "run/never-written.txt"})
    finish(stores, job_id)
    return job_id


def test_list_and_download_artifacts(client: TestClient, stores: Stores) -> None:
    job_id = _job_with_artifacts(stores)
    listing = client.get(f"/jobs/{job_id}/artifacts", headers=ANNOTATOR).json()
    assert listing["artifacts"] == [
        {"name": "best.pt", "path": "run/best.pt", "kind": "file", "bytes": 70},
        {"name": "gone", "path": "run/never-written.txt", "kind": "missing", "bytes": None},
        {"name": "masks", "path": "predictions/masks", "kind": "folder", "bytes": None},
    ]
    r = client.get(f"/jobs/{job_id}/artifacts/best.pt", headers=ANNOTATOR)
    assert r.status_code == 200 and r.content == b"weights" * 10
    assert r.headers["content-disposition"].startswith("attachment")
    # by path inside the job folder, and a folder answers with its files
    assert client.get(f"/jobs/{job_id}/artifacts/run/best.pt", headers=ANNOTATOR).content == b"weights" * 10
    folder = client.get(f"/jobs/{job_id}/artifacts/masks", headers=ANNOTATOR).json()
    assert folder["files"] == ["predictions/masks/a.png", "predictions/masks/b.png"] and not folder["truncated"]
    assert client.get(f"/jobs/{job_id}/artifacts/{folder['files'][1]}", headers=ANNOTATOR).content == b"png"
    r = client.get(f"/jobs/{job_id}/artifacts/nothing.txt", headers=ANNOTATOR)
    assert r.status_code == 404 and "artifacts: best.pt, gone, masks" in r.json()["error"]
    assert client.get(f"/jobs/{uuid.uuid4().hex}/artifacts", headers=ANNOTATOR).status_code == 404
    assert client.get(f"/jobs/{job_id}/artifacts", headers={}).status_code == 401


def test_artifact_names_cannot_leave_the_job_folder(client: TestClient, stores: Stores, tmp_path: Path) -> None:
    job_id = _job_with_artifacts(stores)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (stores.artifacts.job_dir(job_id) / "escape").symlink_to(outside)
    stores.jobs.add_artifacts(job_id, {"evil": "../../outside/secret.txt"})
    attempts = {
        "..%2F..%2F..%2Foutside%2Fsecret.txt": "'..' is not allowed",
        "run/..%2F..%2Fsecret.txt": "'..' is not allowed",
        "%2Fetc%2Fpasswd": "absolute paths are not allowed",
        "escape/secret.txt": "leads outside the job folder",
        "evil": "'..' is not allowed",
    }
    for name, reason in attempts.items():
        r = client.get(f"/jobs/{job_id}/artifacts/{name}", headers=ANNOTATOR)
        assert r.status_code == 403, name
        assert reason in r.json()["error"], r.json()
        assert r.text != "secret"
    evil = [
        a for a in client.get(f"/jobs/{job_id}/artifacts", headers=ANNOTATOR).json()["artifacts"] if a["name"] == "evil"
    ]
    assert evil[0]["kind"] == "missing"


def _gt() -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": W, "height": H, "file_name": f"{i}.png"} for i in (1, 2, 3)],
        "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
        "annotations": [],
    }
    coco.createIndex()
    return coco


def test_results_stream_coco_json(client: TestClient, stores: Stores) -> None:
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "1", rows_for([box_mask(2, 10, 3, 20), disc_mask(30, 40, 8)]))
    stores.predictions.write_image(job_id, "2", rows_for([disc_mask(20, 20, 10)], category_id=9))
    stores.predictions.write_image(job_id, "3", [], height=H, width=W)  # an empty image adds no result
    r = client.get(f"/jobs/{job_id}/results", headers=ANNOTATOR)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["x-segpipe-job-state"] == "running"
    results = json.loads(r.content)
    assert [(res["image_id"], res["category_id"]) for res in results] == [(1, 7), (1, 7), (2, 9)]
    dt = _gt().loadRes(results)
    assert len(dt.dataset["annotations"]) == 3 and {a["image_id"] for a in dt.dataset["annotations"]} == {1, 2}
    assert next(ann["area"] for ann in dt.loadAnns(dt.getAnnIds(imgIds=[1]))) == 8 * 17
    finish(stores, job_id)
    assert client.get(f"/jobs/{job_id}/results", headers=ANNOTATOR).headers["x-segpipe-job-state"] == "succeeded"


def test_results_of_an_empty_job_and_of_a_train_job(sqlite_client: TestClient, sqlite_stores: Stores) -> None:
    job_id = claimed_job(sqlite_stores)
    assert json.loads(sqlite_client.get(f"/jobs/{job_id}/results", headers=ENGINEER).content) == []
    train = claimed_job(sqlite_stores, kind="train", config="task: instance\n")
    r = sqlite_client.get(f"/jobs/{train}/results", headers=ANNOTATOR)
    assert r.status_code == 409 and "only predict jobs have results" in r.json()["error"]
    assert sqlite_client.get(f"/jobs/{uuid.uuid4().hex}/results", headers=ANNOTATOR).status_code == 404


def test_results_streaming_is_chunked(sqlite_client: TestClient, sqlite_stores: Stores) -> None:
    job_id = claimed_job(sqlite_stores)
    for i in range(60):
        sqlite_stores.predictions.write_image(job_id, str(i), rows_for([disc_mask(24, 32, 5 + i % 15)] * 3))
    with sqlite_client.stream("GET", f"/jobs/{job_id}/results", headers=ANNOTATOR) as r:
        body = b"".join(r.iter_raw())
    assert len(json.loads(body)) == 180


def test_chunked_joins_small_pieces() -> None:
    pieces = [bytes([i]) * 3 for i in range(10)]
    out = list(chunked(iter(pieces), size=8))
    assert b"".join(out) == b"".join(pieces)
    assert [len(c) for c in out] == [9, 9, 9, 3]
