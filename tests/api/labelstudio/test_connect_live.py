"""Acceptance: `segpipe labelstudio connect` against a real Label Studio at its default settings (apart from
the compose profile's two private-address switches), a real uvicorn API and a plain `segpipe worker`.

- `connect` from nothing: it creates the project (labeling config from the model's classes), the ML
  backend with auth and a webhook with auth in place of Label Studio's auto-created one; a second run
  changes nothing. New tasks then get predictions when Label Studio shows them.
- segpipe holds only a personal access token (written with a "Token " prefix): it fetches the images
  uploaded to Label Studio with it, and renews the access token when it is due.
- Label Studio's webhook events reach segpipe authenticated (the retraining schedule is signalled).
- "Retrieve predictions" while a training job runs on the same worker gets predictions: the default
  worker serves the interactive queue in a reserved process (the server's timeout is the stated latency).
- A request segpipe cannot answer (a model whose checkpoint is broken) shows in Label Studio as the ML
  backend's Error state, and no empty prediction is stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from segpipe.masks.formats.label_studio import brush_rle_to_mask
from segpipe.processes import stop_process
from segpipe.stores import Stores
from tests.api.labelstudio.test_ml_backend_live import UNET_TINY, _train_tiny, write_tiny_schedule
from tests.support.auth import ENGINEER, tokens_variable
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.live_server import live_api
from tests.support.paths import REPO
from tests.support.redis_db import flush_or_skip

# one Label Studio server per test process: every test that needs it runs in the same xdist worker
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("label-studio")]

REDIS_URL = os.environ.get("SEGPIPE_TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/11")
LATENCY_SECONDS = 60  # the stated answer time under load on 2 shared cores: SEGPIPE_LS_PREDICT_TIMEOUT


@dataclass
class Deployment:
    api: str
    ls: LabelStudioServer
    pat: str
    stores: Stores
    env: dict[str, str]
    root: Path
    data: Path
    images: list[Path]
    train_spec: dict[str, Any]
    worker_log: Path


def _ls(ls: LabelStudioServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, ls.url + path, headers={"Authorization": f"Token {ls.token}"}, timeout=300,
                             **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json() if response.content else None


def _personal_access_token(ls: LabelStudioServer) -> str:
    """A personal access token of the admin (what Label Studio's Account page makes)."""
    return str(_ls(ls, "POST", "/api/token/")["token"])


@pytest.fixture(scope="module")
def deployment(label_studio_server: LabelStudioServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    flush_or_skip(REDIS_URL)
    ls = label_studio_server
    root = tmp_path_factory.mktemp("ls-connect")
    artifacts = root / "artifacts"
    data = ls.files_root / "connect"  # under Label Studio's document root: local files resolve for both
    (data / "batch").mkdir(parents=True)
    checkpoint = _train_tiny(root, artifacts)
    from segpipe.data.synthetic import make_shapes_coco

    fresh = make_shapes_coco(root / "fresh", n_images=6, size=(32, 32), seed=21, empty_images=0)
    images = sorted(fresh.images.glob("*.png"))
    db_url = f"sqlite:///{root / 'segpipe.db'}"
    stores = Stores.open(db_url, artifacts)
    version = stores.versions.register("tiny", "binary", "{}", checkpoint=checkpoint.relative_to(artifacts).as_posix())
    stores.versions.promote("tiny", version.version)
    # a model Label Studio can connect to (its classes are readable) but that cannot predict
    broken_dir = artifacts / "jobs" / "broken-train" / "run"
    broken_dir.mkdir(parents=True)
    shutil.copy(checkpoint.parent / "categories.json", broken_dir / "categories.json")
    shutil.copy(checkpoint.parent / "config.yaml", broken_dir / "config.yaml")
    (broken_dir / checkpoint.name).write_bytes(b"not a checkpoint")
    broken = stores.versions.register("broken", "binary", "{}",
                                      checkpoint=(broken_dir / checkpoint.name).relative_to(artifacts).as_posix())
    stores.versions.promote("broken", broken.version)
    schedule = write_tiny_schedule(root, checkpoint, data / "batch")
    coco = make_shapes_coco(root / "train-shapes", n_images=8, size=(32, 32), seed=3)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    train_spec = {
        "task": "binary", "data": {"train": source, "val": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": dict(UNET_TINY),
        "train": {"device": "cpu", "seed": 0, "epochs": 400, "batch_size": 2, "lr": 1e-3, "image_size": 32,
                  "scheduler": "none", "threads": 1},
    }  # fmt: skip
    pat = _personal_access_token(ls)
    env = {
        "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": REDIS_URL,
        "SEGPIPE_DATA_ROOTS": f"{data},{root / 'train-shapes'}", "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
        "SEGPIPE_TOKENS": tokens_variable(), "SEGPIPE_SCHEDULE": str(schedule),
        # only a personal access token, written the way the README once suggested for legacy ones
        "SEGPIPE_LABEL_STUDIO_URL": ls.url, "SEGPIPE_LABEL_STUDIO_TOKEN": f"Token {pat}",
        "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(ls.files_root), "SEGPIPE_LS_PREDICT_TIMEOUT": str(LATENCY_SECONDS),
        "SEGPIPE_LEASE_SECONDS": "30", "SEGPIPE_HEARTBEAT_SECONDS": "2",
    }  # fmt: skip
    worker_log = root / "worker.log"
    worker_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}, **env,
                  "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with worker_log.open("wb") as out:  # the default queues: no --queues
        worker = subprocess.Popen([sys.executable, "-m", "segpipe", "worker"], env=worker_env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=root)
    try:
        with live_api(env, root / "uvicorn.log") as api:
            yield Deployment(api, ls, pat, stores, env, root, data, images, train_spec, worker_log)
    finally:
        stop_process(worker, grace=30)
        stores.close()


def _connect(d: Deployment, model: str, project: str, token: str) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}, **d.env, "PYTHONPATH": str(REPO)}
    env.pop("SEGPIPE_LABEL_STUDIO_TOKEN")  # given on the command line instead
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [sys.executable, "-m", "segpipe", "labelstudio", "connect", model, "--project", project, "--token", token,
         "--segpipe-url", d.api, "--segpipe-token", "ann-token", "--local-files", str(d.data / "batch"), "--json"],
        env=env, capture_output=True, text=True, timeout=600, cwd=d.root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return dict(json.loads(done.stdout))


def _upload(d: Deployment, pid: int, image: Path) -> None:
    with image.open("rb") as f:
        _ls(d.ls, "POST", f"/api/projects/{pid}/import", files={"file": (image.name, f, "image/png")})


def _tasks(d: Deployment, pid: int) -> list[dict[str, Any]]:
    """The project's tasks as Label Studio's task list shows them (this is what fetches predictions)."""
    tasks = _ls(d.ls, "GET", f"/api/tasks?project={pid}")
    return list(tasks["tasks"] if isinstance(tasks, dict) else tasks)


def _predictions(d: Deployment, task_id: int) -> list[dict[str, Any]]:
    return list(_ls(d.ls, "GET", f"/api/predictions?task={task_id}"))


def _wait_state(d: Deployment, job_id: str, states: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = str(httpx.get(f"{d.api}/jobs/{job_id}", headers=ENGINEER).json()["state"])
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {states}:\n{d.worker_log.read_text()[-3000:]}")


def test_connect_from_nothing_to_predictions_and_authenticated_webhooks(deployment: Deployment) -> None:
    d = deployment
    first = _connect(d, "tiny@production", "connect from nothing", f"Token {d.pat}")
    actions = {(s["what"], s["action"]) for s in first["steps"]}
    assert {("project", "created"), ("ML backend", "created"), ("webhook", "created"), ("storage", "created"),
            ("webhook", "removed")} <= actions, first  # removed: Label Studio's own <backend>/webhook, no auth
    assert first["image_url_prefix"] == "/data/local-files/?d=connect/batch/"
    pid = first["project_id"]

    again = _connect(d, "tiny@production", "connect from nothing", d.pat)  # the token without its prefix
    assert again["changed"] is False and {s["action"] for s in again["steps"]} == {"unchanged"}, again

    hooks = _ls(d.ls, "GET", f"/api/webhooks/?project={pid}")
    assert len(hooks) == 1 and hooks[0]["headers"] == {"Authorization": "Bearer ann-token"}, hooks
    backends = _ls(d.ls, "GET", f"/api/ml?project={pid}")
    assert [(b["state"], b["is_interactive"]) for b in backends] == [("CO", True)]  # boxes reach segpipe

    # new tasks: an upload only Label Studio has (segpipe fetches it with the personal access token)
    # and a local file; showing the task list fetches their predictions
    shutil.copy(d.images[0], d.data / "batch" / d.images[0].name)
    _ls(d.ls, "POST", f"/api/projects/{pid}/import",
        json=[{"image": f"{first['image_url_prefix']}{d.images[0].name}"}])
    _upload(d, pid, d.images[1])
    tasks = _tasks(d, pid)
    assert len(tasks) == 2
    for task in tasks:
        predictions = _predictions(d, task["id"])
        assert len(predictions) == 1, f"task {task['data']}: {predictions}\n{d.worker_log.read_text()[-3000:]}"
        (prediction,) = predictions
        assert prediction["model_version"] == "tiny@1"
        brushes = [r for r in prediction["result"] if r["type"] == "brushlabels"]
        assert brushes, "the tiny model finds the shapes"
        mask = brush_rle_to_mask(brushes[0]["value"]["rle"], brushes[0]["original_height"],
                                 brushes[0]["original_width"])
        assert mask.shape == (32, 32) and np.count_nonzero(mask) > 0

    # the access token is renewed when due: make it look expired, fetch an upload again
    from segpipe.labelstudio.tokens import LabelStudioAuth

    auth = LabelStudioAuth(d.ls.url, f"Token {d.pat}")
    first_access = auth.header()["Authorization"]
    auth.access_expires = time.time()  # due now
    second_access = auth.header()["Authorization"]
    assert first_access != second_access and second_access.startswith("Bearer ")
    upload_url = next(t["data"]["image"] for t in tasks if t["data"]["image"].startswith("/data/upload/"))
    image = httpx.get(d.ls.url + upload_url, headers={"Authorization": second_access})
    assert image.status_code == 200 and image.content == d.images[1].read_bytes()

    # an annotation saved in Label Studio reaches segpipe's webhook, authenticated
    slot = d.stores.retrain.get("tiny")
    assert slot is None or slot.signalled_at is None
    task = tasks[0]
    _ls(d.ls, "POST", f"/api/tasks/{task['id']}/annotations",
        json={"result": _predictions(d, task["id"])[0]["result"], "ground_truth": False})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        slot = d.stores.retrain.get("tiny")
        if slot is not None and slot.signalled_at is not None:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the webhook never reached segpipe:\n{d.ls.log_tail()}")


def test_retrieve_answers_while_a_training_job_runs(deployment: Deployment) -> None:
    d = deployment
    pid = _connect(d, "tiny@production", "busy worker", d.pat)["project_id"]
    submitted = httpx.post(f"{d.api}/jobs", headers=ENGINEER, json={"kind": "train", "config": d.train_spec},
                           timeout=120)
    assert submitted.status_code == 201, submitted.text
    train_id = submitted.json()["id"]
    try:
        assert _wait_state(d, train_id, {"running", "succeeded", "failed"}) == "running"
        _upload(d, pid, d.images[2])
        _upload(d, pid, d.images[3])
        tasks = _ls(d.ls, "GET", f"/api/tasks?project={pid}&fields=all")  # fetches predictions too
        _ls(d.ls, "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
            json={"selectedItems": {"all": True, "excluded": []}})
        tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
        for task in tasks:
            assert len(_predictions(d, task["id"])) == 1, d.worker_log.read_text()[-3000:]
        # answered by the reserved interactive process while the training job still runs
        assert httpx.get(f"{d.api}/jobs/{train_id}", headers=ENGINEER).json()["state"] == "running"
    finally:
        httpx.post(f"{d.api}/jobs/{train_id}/cancel", headers=ENGINEER)


def test_an_unanswerable_request_shows_as_an_error_in_label_studio(deployment: Deployment) -> None:
    d = deployment
    first = _connect(d, "broken@production", "unanswerable", d.pat)
    pid = first["project_id"]
    _upload(d, pid, d.images[4])
    (task,) = _tasks(d, pid)  # Label Studio asks segpipe; the interactive job fails on the checkpoint
    assert _predictions(d, task["id"]) == [], "no empty 'success' prediction is stored"
    (backend,) = _ls(d.ls, "GET", f"/api/ml?project={pid}")
    backend = _ls(d.ls, "GET", f"/api/ml/{backend['id']}")  # what Settings → Model shows
    assert backend["state"] == "ER", backend
    assert "503" in (backend["error_message"] or ""), backend
    # and segpipe's own answer names the reason
    setup = httpx.post(f"{d.api}/ls/broken@production/setup", auth=("label-studio", "ann-token"), json={})
    assert setup.status_code == 503 and "failed" in setup.json()["error"], setup.text
