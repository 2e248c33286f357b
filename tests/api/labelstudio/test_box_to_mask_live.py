"""Acceptance: box-to-mask through a real Label Studio, driven the way its editor drives it.

The shared trained Mask R-CNN (`instance_run`) becomes ``shapes@1``; a Label Studio project with the
labeling config segpipe writes for it (BrushLabels plus the smart RectangleLabels prompt tool) connects
segpipe (real uvicorn, a real ``segpipe worker`` on Redis) as its interactive ML backend. For every
shape of the training images, the ground-truth box goes to Label Studio's own
``/api/ml/{pk}/interactive-annotating`` as its editor sends a finished smart rectangle; Label Studio
forwards it to segpipe's ``/predict`` and hands back what segpipe answered. The brush regions are
validated against the labeling config and decoded with label-studio-sdk (in Label Studio's venv), and
must cover the object in the box.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from segpipe.data.categories import CategoryMap
from segpipe.evaluation.coco import load_coco_quietly
from segpipe.masks.formats.label_studio import BOX_PROMPT, labeling_config
from segpipe.processes import stop_process
from segpipe.stores import Stores
from tests.engine.runs import Run
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.live_server import live_api, spawn_segpipe
from tests.support.redis_db import flush_or_skip
from tests.tools.venvs import run_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("label-studio")]

REDIS_URL = os.environ.get("SEGPIPE_TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/11")
# What the assist must reach through Label Studio: the same median IoU as the model-side test
# (tests/engine/test_box_prompt.py), since the backend only carries the box and the mask.
MEDIAN_IOU = 0.7
UNKNOWN_LABEL = "not-a-class-of-the-model"


@dataclass
class Setup:
    api: str
    ls: LabelStudioServer
    stores: Stores
    run: Run
    folder: str  # the images' folder under Label Studio's files root
    worker_log: Path


@pytest.fixture(scope="module")
def setup(label_studio_server: LabelStudioServer, instance_run: Run,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    flush_or_skip(REDIS_URL)
    root = tmp_path_factory.mktemp("ls-box-to-mask")
    ls = label_studio_server
    data, artifacts = ls.files_root / "box-to-mask-live", root / "artifacts"
    shutil.copytree(instance_run.data / "images", data)
    run_dir = artifacts / "jobs" / "shapes-train" / "run"
    run_dir.mkdir(parents=True)
    for name in ("best.pt", "categories.json", "config.yaml"):
        shutil.copy2(instance_run.dir / name, run_dir / name)
    db_url = f"sqlite:///{root / 'segpipe.db'}"
    stores = Stores.open(db_url, artifacts)
    version = stores.versions.register("shapes", "instance", "{}", checkpoint="jobs/shapes-train/run/best.pt")
    stores.versions.promote("shapes", version.version)
    env = {
        "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": REDIS_URL,
        "SEGPIPE_DATA_ROOTS": str(data), "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
        "SEGPIPE_TOKENS": "ann-token:annotator", "SEGPIPE_LABEL_STUDIO_URL": ls.url,
        "SEGPIPE_LABEL_STUDIO_TOKEN": ls.token, "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(ls.files_root),
        "SEGPIPE_LS_PREDICT_TIMEOUT": "120", "SEGPIPE_LEASE_SECONDS": "30", "SEGPIPE_HEARTBEAT_SECONDS": "2",
    }  # fmt: skip
    worker_log = root / "worker.log"
    worker = spawn_segpipe(["worker", "--queues", "interactive"], env, worker_log, root)
    try:
        with live_api(env, root / "uvicorn.log") as api:
            yield Setup(api, ls, stores, instance_run, data.name, worker_log)
    finally:
        stop_process(worker)
        stores.close()


def _ls(ls: LabelStudioServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, ls.url + path, headers={"Authorization": f"Token {ls.token}"}, timeout=180,
                             **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json() if response.content else None


def _smart_rectangle(bbox: list[float], label: str, width: int, height: int) -> dict[str, Any]:
    """A rectangle as Label Studio's editor serializes one finished with the smart tool."""
    x, y, w, h = bbox
    return {"id": "prompt1", "type": "rectanglelabels", "from_name": BOX_PROMPT, "to_name": "image",
            "original_width": width, "original_height": height, "image_rotation": 0, "origin": "manual",
            "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                      "height": 100 * h / height, "rotation": 0, "rectanglelabels": [label]}}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_a_box_drawn_in_label_studio_comes_back_as_the_objects_brush_mask(setup: Setup, tmp_path: Path) -> None:
    ls = setup.ls
    version = setup.stores.versions.production("shapes")
    assert version is not None and version.checkpoint
    cmap = CategoryMap.load(setup.stores.artifacts.root / Path(version.checkpoint).parent / "categories.json")
    config = labeling_config("instance", list(zip(cmap.ids, cmap.names, strict=True)))
    assert 'smart="true"' in config
    pid = _ls(ls, "POST", "/api/projects", json={"title": "segpipe box-to-mask", "label_config": config})["id"]
    ml = _ls(ls, "POST", "/api/ml", json={
        "project": pid, "title": "segpipe", "url": f"{setup.api}/ls/shapes@production", "is_interactive": True,
        "auth_method": "BASIC_AUTH", "basic_auth_user": "label-studio", "basic_auth_pass": "ann-token",
    })  # fmt: skip
    assert _ls(ls, "GET", f"/api/ml/{ml['id']}")["state"] == "CO"

    coco = load_coco_quietly(setup.run.data / "annotations.json")
    infos = sorted(coco.imgs.values(), key=lambda i: i["file_name"])
    _ls(ls, "POST", f"/api/projects/{pid}/import",
        json=[{"image": f"/data/local-files/?d={setup.folder}/{info['file_name']}"} for info in infos])
    tasks = _ls(ls, "GET", f"/api/tasks?project={pid}")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    task_of = {Path(t["data"]["image"]).name: t["id"] for t in tasks}

    asked, answers = [], []
    for n, ann in enumerate(a for a in coco.dataset["annotations"] if not a.get("iscrowd")):
        info = coco.imgs[ann["image_id"]]
        truth = coco.cats[ann["category_id"]]["name"]
        label = truth if n % 2 == 0 else UNKNOWN_LABEL  # every other box with a label the model lacks
        reply = _ls(ls, "POST", f"/api/ml/{ml['id']}/interactive-annotating", json={
            "task": task_of[info["file_name"]],
            "context": {"result": [_smart_rectangle(ann["bbox"], label, info["width"], info["height"])]}})
        assert "data" in reply, f"Label Studio reports {reply}\n{setup.worker_log.read_text()[-3000:]}"
        asked.append((ann, info, label, truth))
        answers.append(reply["data"])

    # every answer is one brush region of the BrushLabels control, valid for the project's config
    suggestions = [{"data": {"image": info["file_name"]}, "predictions": [{"result": answer["result"]}]}
                   for answer, (_ann, info, _label, _truth) in zip(answers, asked, strict=True)]
    (tmp_path / "config.xml").write_text(config)
    (tmp_path / "tasks.json").write_text(json.dumps(suggestions))
    read = run_tool("label-studio", "labelstudio_read.py", "check", tmp_path / "config.xml", tmp_path / "tasks.json")
    assert read["errors"] == []
    ious, right = [], []
    for answer, task, (ann, info, label, truth) in zip(answers, read["tasks"], asked, strict=True):
        assert answer["model_version"] == "shapes@1"
        assert answer["segpipe"]["label_from"] == ("rectangle" if label == truth else "model")
        (region,) = task["regions"]
        assert (region["type"], region["from_name"]) == ("brushlabels", "label")
        assert (region["width"], region["height"]) == (info["width"], info["height"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(region["mask_bits"]), np.uint8))
        mask = bits[: info["width"] * info["height"]].reshape(info["height"], info["width"]).astype(bool)
        ious.append(_iou(mask, coco.annToMask(ann).astype(bool)))
        if label == truth:
            assert region["label"] == truth  # the rectangle's label, which the model knows
        else:
            right.append(region["label"] == truth)  # the model's own most likely class in the box
    assert statistics.median(ious) >= MEDIAN_IOU, ious
    assert sum(right) / len(right) >= 0.75, right
    assert len({a["segpipe"]["job_id"] for a in answers}) == len(answers), "one box-mask job per drawn box"
    inbox = setup.stores.artifacts.inbox
    assert not any(inbox.iterdir()), "each job's image left the inbox when it ended"

    # a context segpipe cannot read: Label Studio passes segpipe's 422 on as the request's error
    bad = _smart_rectangle([1, 1, 10, 10], "circle", 64, 64)
    bad["value"]["width"] = "wide"
    reply = _ls(ls, "POST", f"/api/ml/{ml['id']}/interactive-annotating",
                json={"task": tasks[0]["id"], "context": {"result": [bad]}})
    assert "data" not in reply and "422" in reply["errors"][0], reply
