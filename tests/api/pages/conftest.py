"""Review-page fixtures: a real uvicorn serving the API over a SQLite store with a finished predict job,
and Debian's chromium driven through Playwright (installed by ``make browser-deps``; never a
downloaded browser). The API fixtures (``client``, ``stores``, ``settings``…) are tests/api/conftest.py's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segpipe.masks.encode import mask_to_rle
from segpipe.stores import Stores
from tests.support.auth import tokens_variable
from tests.support.live_server import live_api

CHROMIUM = os.environ.get("SEGPIPE_TEST_CHROMIUM", "/usr/bin/chromium")
# The flags that work on these machines: no sandbox as root, no GPU, and no background traffic to a
# network that is closed.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
H, W = 96, 128
GREY = 128
CAT, DOG = 1, 2
UNCERTAINTY = {"a": 0.4, "b": 0.9, "c": 0.1}  # the finished job's images, as its predict run stored them


@dataclass
class Site:
    base: str
    job_id: str
    running_job_id: str
    stores: Stores
    data: Path
    interactive_job_id: str = ""


def disc(cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8)


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def row(mask: np.ndarray, category_id: int, name: str, score: float) -> dict[str, Any]:
    ys, xs = np.nonzero(mask)
    return {"category_id": category_id, "category_name": name, "score": score,
            "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
            "rle": mask_to_rle(mask), "height": H, "width": W}


# image "a": a confident cat (disc, left) and an unsure dog (box, right)
A_ROWS = [row(disc(48, 32, 20), CAT, "cat", 0.9), row(box(30, 70, 80, 120), DOG, "dog", 0.3)]
# image "d" (an interactive job's): a cat disc, and a dog box drawn after it over the disc's right half
D_ROWS = [row(disc(48, 64, 20), CAT, "cat", 0.9), row(box(20, 76, 64, 110), DOG, "dog", 0.8)]
# a COCO evaluation's metrics: -1 where the validation set has no object of that size
COCO_METRICS = {f"{iou}_{name}": value for iou in ("segm", "bbox") for name, value in (
    ("AP", 0.42), ("AP50", 0.61), ("AP75", 0.40), ("APs", -1.0), ("APm", 0.38), ("APl", 0.47), ("AR1", 0.31),
    ("AR10", 0.5), ("AR100", 0.52), ("ARs", -1.0), ("ARm", 0.49), ("ARl", 0.55))}


def _demo_model(stores: Stores) -> None:
    """demo@1 in production (promoted by hand: one decision), with a checkpoint the exports can read (its
    task and categories; the weights are never loaded here)."""
    import torch

    from segpipe.data.categories import CategoryMap
    from segpipe.retrain.promotion import promote_by_hand

    # where a training job leaves it: model versions point into jobs/<job id>/ of the artifact root
    run = stores.artifacts.root / "jobs" / "demo-train" / "run"
    run.mkdir(parents=True)
    cmap = CategoryMap(ids=(CAT, DOG), names=("cat", "dog"))
    torch.save({"model": {}, "task": "instance", "category_map": cmap.to_dict()}, run / "best.pt")
    cmap.save(run / "categories.json")
    stores.versions.register("demo", "instance", "task: instance\n", checkpoint="jobs/demo-train/run/best.pt",
                             metrics={"segm_mAP": 0.42, "bbox_mAP": 0.5, "val_loss": 0.8123, **COCO_METRICS})
    promote_by_hand(stores, "demo", 1, by="engineer:test")


@pytest.fixture
def predict_inputs() -> None:
    """The API route tests' predict inputs (tests/api/conftest.py, autouse) are not written here: the
    servers these tests start read folders of their own."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    data = root / "data"
    images = data / "batch"
    images.mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((H, W, 3), GREY, np.uint8)).save(images / f"{name}.png")
    stores = Stores.open(f"sqlite:///{root / 'segpipe.db'}", root / "artifacts")
    _demo_model(stores)
    job = stores.jobs.create("predict", f"model: demo@production\nimages: {images}\n", "gpu")
    assert stores.jobs.claim(job.id, "w", lease_seconds=3600).claimed
    stores.jobs.update_progress(job.id, "w", {"phase": "done", "images_done": 3, "images_total": 3, "model": "demo@2"})
    # what to label next: b (the model's least sure), then a, then c; fingerprints far apart (no near-duplicates)
    stores.predictions.write_image(job.id, "a", A_ROWS, uncertainty=UNCERTAINTY["a"], fingerprint="00000000ffffffff")
    stores.predictions.write_image(job.id, "b", [row(disc(20, 20, 8), CAT, "cat", 0.6)],
                                   uncertainty=UNCERTAINTY["b"], fingerprint="ffffffff00000000")
    stores.predictions.write_image(job.id, "c", [], height=H, width=W, uncertainty=UNCERTAINTY["c"],
                                   fingerprint="0f0f0f0f0f0f0f0f")
    assert stores.jobs.finish(job.id, "w", "succeeded")
    running = stores.jobs.create("predict", f"model: demo@production\nimages: {images}\n", "gpu")
    assert stores.jobs.claim(running.id, "w2", lease_seconds=3600).claimed
    stores.jobs.update_progress(running.id, "w2", {"phase": "predict", "images_done": 1, "images_total": 4})
    inbox = data / "ls-inbox"  # what the Label Studio backend's interactive jobs predict
    inbox.mkdir()
    Image.fromarray(np.full((H, W, 3), GREY, np.uint8)).save(inbox / "d.png")
    interactive = stores.jobs.create("predict", f"model: demo@production\nimages: {inbox}\n", "interactive")
    assert stores.jobs.claim(interactive.id, "w3", lease_seconds=3600).claimed
    stores.jobs.update_progress(interactive.id, "w3", {"phase": "done", "images_done": 1, "images_total": 1})
    stores.predictions.write_image(interactive.id, "d", D_ROWS)
    assert stores.jobs.finish(interactive.id, "w3", "succeeded")
    env = {
        "SEGPIPE_DATABASE_URL": f"sqlite:///{root / 'segpipe.db'}",
        "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}",
        "SEGPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
        "SEGPIPE_DATA_ROOTS": str(data),
        "SEGPIPE_HOME": str(root / "home"),
        "SEGPIPE_TOKENS": tokens_variable(),
    }
    with live_api(env, root / "uvicorn.log") as base:
        yield Site(base, job.id, running.id, stores, data, interactive.id)
    stores.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is not installed (run `make browser-deps`: Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def log_in(page: Any, base: str, token: str, start: str = "/ui/jobs") -> None:
    page.goto(base + start)
    assert "/ui/login" in page.url
    page.fill("#token", token)
    page.click("#login-button")
    page.wait_for_url(lambda url: "/ui/login" not in url)


def canvas_pixels(page: Any, selector: str) -> np.ndarray:
    """What the browser actually drew: a screenshot of the canvas element, as an RGB array at canvas resolution."""
    import io

    shot = page.locator(selector).screenshot()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    size = page.eval_on_selector(selector, "c => [c.width, c.height]")
    return np.asarray(image.resize((int(size[0]), int(size[1])), Image.NEAREST))

