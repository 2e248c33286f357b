"""What the API process serves without loading the model libraries (issue 17, point 5), shared by
``tests/api/test_api_without_torch.py`` and ``bench/api_footprint.py``: stores holding a production model
version (its run's ``categories.json``, no loadable checkpoint) and a finished predict job of it, the
environment of an API process over them, the requests it serves (a train submit, an export download, a
Label Studio predict from stored predictions) and what a process has loaded (/proc/<pid>)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from segpipe.masks.formats.label_studio import labeling_config
from segpipe.stores import Stores
from tests.api.conftest import H, W, disc_mask, production_cells_version, rows_for

ENGINEER = {"Authorization": "Bearer eng-token"}
LABEL_STUDIO = {"Authorization": "Basic " + base64.b64encode(b"label-studio:ann-token").decode()}
CLASSES = [(3, "cell"), (5, "nucleus")]
# Files of the model libraries as they appear in /proc/<pid>/maps (shared objects) and module names.
HEAVY_FILES = ("/torch/", "/torchvision/", "/segmentation_models_pytorch/", "/timm/")
HEAVY_MODULES = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "albumentations")


@dataclass(frozen=True)
class Served:
    env: dict[str, str]
    predict_job: str


def prepare(root: Path) -> Served:
    """Stores under ``root`` with ``cells@1`` in production and a succeeded predict job that stored image
    ``batch/a``; the data a train config names; the ``SEGPIPE_*`` environment of an API over them."""
    data = root / "data"
    (data / "batch").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(data / "batch" / "a.png")
    for folder in ("images", "masks"):
        (data / "train" / folder).mkdir(parents=True)
    stores = Stores.open(f"sqlite:///{root / 'segpipe.db'}", root / "artifacts")
    try:
        version = production_cells_version(stores)
        job = stores.jobs.create("predict", f"model: cells@production\nimages: {data / 'batch'}\n", "gpu")
        assert stores.jobs.claim(job.id, "w", lease_seconds=60).claimed
        stores.jobs.record_model(job.id, "cells", version.version)
        rows = rows_for([disc_mask(20, 20, 9), disc_mask(30, 45, 6)], category_id=5)
        for row in rows:
            row["category_name"] = "nucleus"
        stores.predictions.write_image(job.id, "a", rows)
        assert stores.jobs.finish(job.id, "w", "succeeded")
    finally:
        stores.close()
    env = {
        "SEGPIPE_HOME": str(root / "home"),
        "SEGPIPE_DATABASE_URL": f"sqlite:///{root / 'segpipe.db'}",
        "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}",
        "SEGPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
        "SEGPIPE_DATA_ROOTS": str(data),
        "SEGPIPE_TOKENS": "eng-token:engineer,ann-token:annotator",
        "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(data),
        "SEGPIPE_LABEL_STUDIO_URL": "http://127.0.0.1:9",
    }
    return Served(env, job.id)


def serve_requests(base: str, served: Served) -> dict[str, int]:
    """The three requests, each answered as a client expects (AssertionError naming the one that was not)."""
    answers: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        train = {"task": "semantic", "model": {"name": "unet", "encoder": "resnet18"},
                 "data": {"train": {"images": "train/images", "masks": "train/masks"}}}
        r = client.post("/jobs", json={"kind": "train", "config": train}, headers=ENGINEER)
        assert r.status_code == 201, ("train submit", r.text)
        answers["train submit"] = r.status_code
        r = client.get(f"/jobs/{served.predict_job}/export", params={"format": "coco"}, headers=ENGINEER)
        assert r.status_code == 200 and r.content.startswith(b"PK"), ("export", r.status_code, r.text[:300])
        answers["export"] = r.status_code
        r = client.post("/ls/cells@production/predict", headers=LABEL_STUDIO, json={
            "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=batch/a.png"}}],
            "label_config": labeling_config("instance", CLASSES), "project": "1.1"})
        assert r.status_code == 200, ("label studio predict", r.text[:300])
        (result,) = r.json()["results"]
        assert result["segpipe"]["stored"] is True and len(result["result"]) == 2, result
        answers["label studio predict"] = r.status_code
    return answers


def heavy_files_mapped(pid: int) -> list[str]:
    """The files of torch, torchvision, smp or timm mapped into process ``pid`` (its shared objects)."""
    files = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if any(part in path for part in HEAVY_FILES):
            files.add(path)
    return sorted(files)


def resident_mib(pid: int) -> float:
    """VmRSS of process ``pid``, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid}: no VmRSS")
