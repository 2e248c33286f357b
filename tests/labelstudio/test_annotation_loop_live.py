"""Acceptance: the whole annotation loop, from Label Studio's side, on a real Label Studio server, a real
uvicorn API, a real `segpipe worker` and a real `segpipe beat` (Redis broker, SQLite store).

1. ``POST /labelstudio/connect`` makes a project with segpipe's ``tiny@production`` as its ML backend.
2. Six images are imported (uploaded to Label Studio); "Retrieve predictions" stores ``tiny@1``'s.
3. The schedule binds ``tiny`` to the project (debounce 2 s, beat ticking every second). Its first check
   finds no annotated task and queues nothing.
4. A scripted annotator submits the true masks of four tasks through Label Studio's API; Label Studio's
   webhook signals segpipe; after the debounce the tick pulls a snapshot of the project, splits it, and
   queues a retraining; the worker trains ``tiny@2``, evaluates both versions on the snapshot's
   validation side, and the gate promotes it. The project's backend now carries ``tiny@2``.
5. "Retrieve predictions" again: every task gets a ``tiny@2`` prediction, and the project's task list,
   ordered by prediction score in Label Studio's data manager, is segpipe's "label next" ranking.

Why the gate's outcome is certain after a single epoch: ``tiny@1`` learnt from masks nobody drew (the
shapes are in its images, its masks are empty), so it marks no pixel and its foreground IoU on any
validation set is 0, the least IoU there is; the gate asks for ``iou`` not to drop (``min_delta: 0``),
which every candidate meets. The retraining may therefore be as short as one epoch from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from segpipe.jobs.specs import load_spec
from segpipe.masks.formats.label_studio import mask_to_brush_rle
from segpipe.processes import stop_process
from segpipe.snapshots.split import side_of
from segpipe.snapshots.store import SnapshotStore
from segpipe.stores import Stores
from tests.engine.runs import train_on_one_thread
from tests.labelstudio.test_ml_backend_live import UNET_TINY
from tests.labelstudio_server import LabelStudioServer
from tests.live_server import live_api, spawn_segpipe

# one Label Studio server per test process: every test that needs it runs in the same xdist worker
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("label-studio")]

REDIS_URL = os.environ.get("SEGPIPE_TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/11")
TOKENS = {"ann-token": "annotator", "eng-token": "engineer"}
ENGINEER = {"Authorization": "Bearer eng-token"}
SIZE = 32
VAL_FRACTION = 0.5
BATCH_SEED = 30  # its six images split 3 / 3 by content at VAL_FRACTION: both sides get corrections


@dataclass
class Loop:
    api: str
    ls: LabelStudioServer
    stores: Stores
    env: dict[str, str]
    root: Path
    logs: dict[str, Path]
    images: list[Path]
    truth: COCO

    def tails(self) -> str:
        logs = [f"--- {name}\n{path.read_text(errors='replace')[-2500:]}" for name, path in self.logs.items()
                if path.is_file()]
        return "\n".join([*logs, f"--- label studio\n{self.ls.log_tail(2500)}"])


def _train_blind(root: Path, artifacts: Path) -> Path:
    """A binary U-Net trained on shapes whose masks nobody drew: it marks no pixel (foreground IoU 0)."""
    import cv2

    from segpipe.data.synthetic import make_mask_folders

    images, masks = make_mask_folders(root / "blind", n_images=8, size=(SIZE, SIZE), binary=True, seed=2)
    for mask in masks.glob("*.png"):
        cv2.imwrite(str(mask), np.zeros((SIZE, SIZE), np.uint8))
    spec = {
        "task": "binary", "augment": {"preset": "none"}, "model": dict(UNET_TINY),
        "data": {"train": {"images": str(images), "masks": str(masks)}, "foreground_value": 255, "num_workers": 0},
        "output_dir": str(artifacts / "jobs" / "blind-train" / "run"),
        "train": {"device": "cpu", "seed": 0, "epochs": 5, "batch_size": 2, "lr": 5e-3, "image_size": SIZE,
                  "scheduler": "none"},
    }  # fmt: skip
    result = train_on_one_thread(spec)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    assert checkpoint is not None
    return Path(checkpoint)



@pytest.fixture
def loop(label_studio_server: LabelStudioServer, tmp_path: Path) -> Iterator[Loop]:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc})")
    from segpipe.data.synthetic import make_shapes_coco

    root, ls = tmp_path, label_studio_server
    artifacts = root / "artifacts"
    (root / "data").mkdir()
    env = {
        "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_DATABASE_URL": f"sqlite:///{root / 'segpipe.db'}",
        "SEGPIPE_BROKER_URL": REDIS_URL, "SEGPIPE_DATA_ROOTS": str(root / "data"),
        "SEGPIPE_ARTIFACT_ROOT": str(artifacts), "SEGPIPE_SCHEDULE": str(root / "schedule.yaml"),
        "SEGPIPE_TOKENS": ",".join(f"{t}:{r}" for t, r in TOKENS.items()),
        "SEGPIPE_LABEL_STUDIO_URL": ls.url, "SEGPIPE_LABEL_STUDIO_TOKEN": ls.token,
        "SEGPIPE_LS_PREDICT_TIMEOUT": "120", "SEGPIPE_RETRAIN_TICK_SECONDS": "1",
        "SEGPIPE_LEASE_SECONDS": "30", "SEGPIPE_HEARTBEAT_SECONDS": "2",
    }  # fmt: skip
    logs = {"api": root / "api.log", "worker": root / "worker.log", "beat": root / "beat.log"}
    # beat sends ticks only when a schedule file exists as it starts; the test binds the model later
    (root / "schedule.yaml").write_text(yaml.safe_dump({"models": {}}))
    # the services start while the production model trains (they are ready by the time they are asked)
    worker = spawn_segpipe(["worker"], env, logs["worker"], root)
    beat = spawn_segpipe(["beat"], env, logs["beat"], root)
    stores = Stores.open(env["SEGPIPE_DATABASE_URL"], artifacts)
    try:
        with live_api(env, logs["api"]) as api:
            checkpoint = _train_blind(root, artifacts)
            version = stores.versions.register("tiny", "binary", "{}",
                                               checkpoint=checkpoint.relative_to(artifacts).as_posix())
            stores.versions.promote("tiny", version.version)
            batch = make_shapes_coco(root / "batch", n_images=6, size=(SIZE, SIZE), seed=BATCH_SEED,
                                     empty_images=0, crowd=False)
            yield Loop(api, ls, stores, env, root, logs, sorted(batch.images.glob("*.png")),
                       COCO(str(batch.annotations)))
    finally:
        stop_process(beat, grace=10)
        stop_process(worker, grace=30)
        stores.close()


def _ls(ls: LabelStudioServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, ls.url + path, headers={"Authorization": f"Token {ls.token}"}, timeout=300,
                             **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json() if response.content else None


def _task_list(ls: LabelStudioServer, query: str) -> list[dict[str, Any]]:
    answer = _ls(ls, "GET", f"/api/tasks?{query}&page_size=100")
    return list(answer["tasks"] if isinstance(answer, dict) else answer)


def _retrieve_predictions(ls: LabelStudioServer, pid: int) -> None:
    """The data manager's "Retrieve predictions" action on every task."""
    _ls(ls, "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
        json={"selectedItems": {"all": True, "excluded": []}})


def _predictions(ls: LabelStudioServer, task_id: int) -> list[dict[str, Any]]:
    return list(_ls(ls, "GET", f"/api/predictions?task={task_id}"))


def _corrected_masks(truth: COCO, image: Path, label: str) -> list[dict[str, Any]]:
    """What the annotator draws on ``image``: each shape's true mask as a brush region."""
    (info,) = [i for i in truth.dataset["images"] if i["file_name"] == image.name]
    return [{"from_name": "label", "to_name": "image", "type": "brushlabels", "original_width": info["width"],
             "original_height": info["height"], "image_rotation": 0,
             "value": {"format": "rle", "rle": mask_to_brush_rle(truth.annToMask(ann)), "brushlabels": [label]}}
            for ann in truth.loadAnns(truth.getAnnIds(imgIds=[info["id"]]))]


def _wait(what: str, check: Callable[[], Any], loop: Loop, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{loop.tails()}")


def test_corrections_in_label_studio_retrain_promote_and_reorder_its_tasks(loop: Loop) -> None:
    ls, stores = loop.ls, loop.stores
    # 1. connect, through segpipe's API
    connected = httpx.post(f"{loop.api}/labelstudio/connect", headers=ENGINEER, timeout=300, json={
        "model": "tiny@production", "project": f"annotation loop {uuid.uuid4().hex[:8]}",
        "segpipe_url": loop.api, "segpipe_token": "ann-token"})  # fmt: skip
    assert connected.status_code == 200, connected.text
    pid = connected.json()["project_id"]
    assert _ls(ls, "GET", f"/api/projects/{pid}")["model_version"] == "tiny@1"  # the backend's title

    # 2. images in; tiny@1's predictions retrieved into Label Studio: it marks nothing
    _ls(ls, "POST", f"/api/projects/{pid}/import",
        files=[(p.name, (p.name, p.read_bytes(), "image/png")) for p in loop.images])
    tasks = _task_list(ls, f"project={pid}")
    assert len(tasks) == len(loop.images)
    image_of = {t["id"]: next(p for p in loop.images if t["data"]["image"].endswith(f"-{p.name}")) for t in tasks}
    _retrieve_predictions(ls, pid)
    for task in tasks:
        (prediction,) = _predictions(ls, task["id"])
        assert (prediction["model_version"], prediction["result"]) == ("tiny@1", []), prediction

    # 3. the retraining schedule, bound to the project; beat's first check finds nothing to learn from
    (loop.root / "schedule.yaml").write_text(yaml.safe_dump({
        "debounce_seconds": 2,  # the annotator's four saves fall in one window: one snapshot, one retraining
        "models": {"tiny": {
            "every": "24h",
            "config": {"task": "binary", "augment": {"preset": "none"}, "model": dict(UNET_TINY),
                       "train": {"device": "cpu", "seed": 0, "epochs": 1, "batch_size": 2, "lr": 3e-3,
                                 "image_size": SIZE, "scheduler": "none", "threads": 1}},
            "label_studio": {"project": pid, "val_fraction": VAL_FRACTION},
            "fine_tune_from_production": False,  # one epoch from tiny@1's weights would mark nothing either
            "gate": {"metric": "iou", "mode": "max", "min_delta": 0},  # certain: see the module docstring
        }},
    }))  # fmt: skip
    first = _wait("beat's first check", lambda: (s := stores.retrain.get("tiny")) is not None and s.note, loop)
    assert "has no annotated task yet" in first, first

    # 4. the annotator corrects two tasks of each side of the split; the webhook signals segpipe
    sides = {tid: side_of(image.read_bytes(), VAL_FRACTION) for tid, image in image_of.items()}
    corrected = [tid for side in ("train", "val") for tid in sorted(t for t in sides if sides[t] == side)[:2]]
    assert len(corrected) == 4, f"batch seed {BATCH_SEED}: sides {sides}"
    for tid in corrected:
        _ls(ls, "POST", f"/api/tasks/{tid}/annotations",
            json={"result": _corrected_masks(loop.truth, image_of[tid], "foreground"), "ground_truth": False})
    (job,) = _wait("a retraining queued by the webhook's signal", lambda: stores.jobs.list(kind="retrain")[0], loop)
    spec = load_spec("retrain", job.config)
    assert spec.trigger.startswith("dataset signalled") and f"Label Studio project {pid}" in spec.trigger
    decision = _wait("the gate's decision", lambda: stores.decisions.for_version("tiny", 2, source="gate"), loop)
    assert decision.outcome == "promoted", decision.reason
    assert decision.production_metrics is not None and decision.production_metrics["iou"] == 0.0
    assert stores.versions.production("tiny").version == 2
    snapshot = SnapshotStore(Path(loop.env["SEGPIPE_ARTIFACT_ROOT"])).get(spec.dataset[0].parent.name)  # …/ID/images
    assert (snapshot.images, snapshot.categories) == (4, ["foreground"])
    coco = json.loads((Path(snapshot.path) / "annotations.json").read_text())
    assert [c["id"] for c in coco["categories"]] == [255], "the snapshot keeps tiny@1's category id"
    assert _wait("the retraining's end", lambda: stores.jobs.get(job.id).state == "succeeded", loop)
    (backend,) = _ls(ls, "GET", f"/api/ml?project={pid}")
    assert backend["title"] == "tiny@2" and _ls(ls, "GET", f"/api/projects/{pid}")["model_version"] == "tiny@2"

    # 5. Label Studio's next predictions are tiny@2's, and its data manager sorts by segpipe's uncertainty
    _retrieve_predictions(ls, pid)
    for task in tasks:
        assert sorted(p["model_version"] for p in _predictions(ls, task["id"])) == ["tiny@1", "tiny@2"]
    assert _ls(ls, "GET", f"/api/ml/{backend['id']}")["model_version"] == "tiny@2"
    view = _ls(ls, "POST", "/api/dm/views", json={"project": pid, "data": {"ordering": ["tasks:predictions_score"]}})
    in_label_studio = [t["id"] for t in _task_list(ls, f"view={view['id']}&project={pid}")]
    (answered,) = [j for j in stores.jobs.list(kind="predict")[0] if j.queue == "interactive" and j.model_version == 2]
    ranking = httpx.get(f"{loop.api}/jobs/{answered.id}/label-next", params={"min_distance": 0},
                        headers={"Authorization": "Bearer ann-token"}).json()
    task_of = {hashlib.sha256(image.read_bytes()).hexdigest()[:40]: tid for tid, image in image_of.items()}
    assert in_label_studio == [task_of[i["image_key"]] for i in ranking["images"]], (in_label_studio, ranking)

