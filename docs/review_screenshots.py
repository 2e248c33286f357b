"""Screenshots of the review pages for the README: ``python docs/review_screenshots.py [OUT_DIR]``.

Builds a throwaway store with a finished predict job over generated shapes (their true masks stored as
the "predictions", with made-up scores), serves the API with uvicorn on loopback, logs in with Debian's
chromium and saves docs/review-*.png (jobs, gallery, label next, one image, model). Needs
`make browser-deps` and the test extra (playwright).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segpipe.data.synthetic import make_shapes_coco  # noqa: E402
from segpipe.masks.encode import mask_to_rle  # noqa: E402
from segpipe.stores import Stores  # noqa: E402
from tests.api.pages.conftest import CHROMIUM, CHROMIUM_ARGS, log_in  # noqa: E402
from tests.support.live_server import live_api  # noqa: E402


def build(root: Path) -> tuple[dict[str, str], str]:
    import torch
    from pycocotools import mask as mask_utils

    from segpipe.data.categories import CategoryMap
    from segpipe.retrain.promotion import promote_by_hand

    data = root / "data"
    shapes = make_shapes_coco(data / "shapes", n_images=60, size=(160, 224), max_shapes=4, seed=5, crowd=False, rle=False)
    from PIL import Image

    for path in shapes.images.glob("*.png"):  # grey images, so that only the overlays carry colour
        Image.open(path).convert("L").convert("RGB").save(path)
    stores = Stores.open(f"sqlite:///{root / 'segpipe.db'}", root / "artifacts")
    run = stores.artifacts.root / "models" / "shapes" / "run"
    run.mkdir(parents=True)
    cmap = CategoryMap(ids=(3, 7, 12), names=("circle", "square", "triangle"))
    torch.save({"model": {}, "task": "instance", "category_map": cmap.to_dict()}, run / "best.pt")
    cmap.save(run / "categories.json")  # what the API reads for the downloads (it never loads the model)
    for version, metrics in ((1, {"segm_mAP": 0.61, "bbox_mAP": 0.66}), (2, {"segm_mAP": 0.68, "bbox_mAP": 0.71})):
        stores.versions.register("shapes", "instance", "task: instance\n", checkpoint="models/shapes/run/best.pt",
                                 metrics=metrics, parent_version=version - 1 or None)
        promote_by_hand(stores, "shapes", version, by="engineer:docs")
    coco = json.loads(shapes.annotations.read_text())
    rng = np.random.default_rng(0)
    doubt = np.random.default_rng(1)  # made-up uncertainties, for "what to label next" (the scores stay as they were)
    job = stores.jobs.create("predict", f"model: shapes@production\nimages: {shapes.images}\n", "gpu")
    stores.jobs.claim(job.id, "docs", lease_seconds=600)
    stores.jobs.record_model(job.id, "shapes", 2)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for info in coco["images"]:
        rows = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == info["id"]):
            h, w = info["height"], info["width"]
            rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
            mask = mask_utils.decode(rle if isinstance(rle, dict) else mask_utils.merge(rle))
            rows.append({"category_id": ann["category_id"], "category_name": names[ann["category_id"]],
                         "score": float(rng.uniform(0.2, 0.99)), "bbox": ann["bbox"], "rle": mask_to_rle(mask),
                         "height": h, "width": w})
        stores.predictions.write_image(job.id, Path(info["file_name"]).stem, rows, height=info["height"],
                                       width=info["width"], uncertainty=float(doubt.uniform(0.0, 1.0)))
    stores.jobs.update_progress(job.id, "docs", {"phase": "done", "images_done": 60, "images_total": 60,
                                                 "model": "shapes@2"})
    stores.jobs.finish(job.id, "docs", "succeeded")
    running = stores.jobs.create("predict", f"model: shapes@production\nimages: {shapes.images}\n", "gpu")
    stores.jobs.claim(running.id, "docs2", lease_seconds=600)
    stores.jobs.update_progress(running.id, "docs2", {"phase": "predict", "images_done": 3120, "images_total": 10000,
                                                      "model": "shapes@2"})
    stores.close()
    env = {"SEGPIPE_DATABASE_URL": f"sqlite:///{root / 'segpipe.db'}",
           "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}", "SEGPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
           "SEGPIPE_DATA_ROOTS": str(data), "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_TOKENS": "docs-token:annotator"}
    return env, job.id


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env, job_id = build(Path(tmp))
        with live_api(env, Path(tmp) / "uvicorn.log") as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            log_in(page, base, "docs-token")
            page.screenshot(path=str(out / "review-jobs.png"))
            page.goto(f"{base}/ui/jobs/{job_id}?per=24")
            page.wait_for_selector(".tile[data-state='drawn'] >> nth=11")
            page.fill("#score", "0.4")
            page.uncheck(".class-box >> nth=1")
            page.screenshot(path=str(out / "review-gallery.png"))
            first = page.get_attribute(".tile >> nth=1", "data-key")
            page.goto(f"{base}/ui/jobs/{job_id}/images/{first}")
            page.wait_for_selector("#instances tbody tr")
            page.select_option("#mode", "outline")
            page.hover("#instances tbody tr >> nth=0")
            page.screenshot(path=str(out / "review-image.png"))
            page.goto(f"{base}/ui/jobs/{job_id}/label-next?top=12")
            page.wait_for_selector(".tile[data-state='drawn'] >> nth=7")
            page.screenshot(path=str(out / "review-label-next.png"))
            page.goto(f"{base}/ui/models/shapes")
            page.screenshot(path=str(out / "review-models.png"))
            browser.close()
    print("wrote", ", ".join(sorted(p.name for p in out.glob("review-*.png"))))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs")
