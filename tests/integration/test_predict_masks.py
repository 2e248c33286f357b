"""A predict job submitted over HTTP, run by a real worker, its masks fetched per image in every format, and
its exports (``GET /jobs/{id}/export``) imported by datumaro and label-studio-sdk.

The three formats are decoded here with pycocotools and OpenCV (not segpipe's own decoders) and
compared with each other and with what the job wrote to disk: RLE and PNG exactly, polygons by IoU.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.data.synthetic import make_shapes_coco
from tests.integration.conftest import ANNOTATOR, Service, predict_spec

SIZE = 32


def _decode_png(content: bytes) -> np.ndarray:
    """Pixel values as stored (the class map is a palette PNG whose indices are category ids)."""
    return np.asarray(Image.open(io.BytesIO(content)))


def _rasterize(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    if not polygons:
        return np.zeros((height, width), bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


@pytest.mark.integration
def test_predict_job_masks_over_http_match_each_other_and_the_files(svc: Service, tiny_model: Path) -> None:
    coco = make_shapes_coco(svc.data_dir("predict"), n_images=4, size=(SIZE, SIZE), seed=7, empty_images=0)
    job_id = svc.submit("predict", predict_spec(tiny_model, coco.images))
    job = svc.wait_done(job_id)
    assert job["progress"]["images_done"] == job["progress"]["images_total"] == 4
    # what to label next: every image stored with the model's uncertainty and its fingerprint
    ranked = svc.client.get(f"/jobs/{job_id}/label-next", params={"min_distance": 0}, headers=ANNOTATOR).json()
    assert ranked["scored"] == 4 and len(ranked["images"]) == 4
    assert all(0.0 <= i["uncertainty"] <= 1.0 for i in ranked["images"])
    uncertainties = [i["uncertainty"] for i in ranked["images"]]
    assert uncertainties == sorted(uncertainties, reverse=True)

    out = svc.job_dir(job_id) / "predictions"
    results = defaultdict(list)
    for result in json.loads((out / "predictions.json").read_text()):
        results[result["image_id"]].append(result)
    keys = sorted(p.stem for p in coco.images.glob("*.png"))
    foreground_images = 0
    for key in keys:
        query = {"job": job_id}
        rle = svc.client.get(f"/images/{key}/masks", params={**query, "format": "rle"}, headers=ANNOTATOR)
        assert rle.status_code == 200, rle.text
        assert rle.headers["X-Segpipe-Job"] == job_id
        body = rle.json()
        assert (body["image_key"], body["height"], body["width"]) == (key, SIZE, SIZE)
        # RLE: exactly the job's COCO results file for this image
        assert [i["rle"] for i in body["instances"]] == [r["segmentation"] for r in results.get(key, [])]
        assert [i["category_id"] for i in body["instances"]] == [r["category_id"] for r in results.get(key, [])]
        masks = [mask_utils.decode(i["rle"]).astype(bool) for i in body["instances"]]
        union = np.logical_or.reduce(masks) if masks else np.zeros((SIZE, SIZE), bool)

        # PNG: the same class map as the job's masks/<key>.png (pixel = original category id)
        png = svc.client.get(f"/images/{key}/masks", params={**query, "format": "png"}, headers=ANNOTATOR)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png", png.text
        served = _decode_png(png.content)
        assert (out / "masks" / f"{key}.png").is_file(), f"the job wrote no masks/{key}.png"
        on_disk = np.asarray(Image.open(out / "masks" / f"{key}.png"))
        assert served.dtype == on_disk.dtype and np.array_equal(served, on_disk)
        assert np.array_equal(served > 0, union)

        # polygons: the same instances, rasterising back to their RLE masks
        poly = svc.client.get(f"/images/{key}/masks", params={**query, "format": "polygons"}, headers=ANNOTATOR)
        assert poly.status_code == 200, poly.text
        instances = poly.json()["objects"]
        assert [i["instance"] for i in instances] == [i["instance"] for i in body["instances"]]
        for inst, mask in zip(instances, masks, strict=True):
            drawn = _rasterize(inst["polygons"], SIZE, SIZE)
            iou = (drawn & mask).sum() / max((drawn | mask).sum(), 1)
            assert iou >= 0.95, f"image {key} instance {inst['instance']}: polygons IoU {iou:.3f}"
        foreground_images += bool(union.any())
    assert foreground_images >= 1, "the model found no foreground in any image: nothing was compared"

    missing = svc.client.get("/images/no-such-image/masks", params={"job": job_id}, headers=ANNOTATOR)
    assert missing.status_code == 404


@pytest.mark.integration
def test_predict_job_exports_import_into_the_tools(svc: Service, tiny_model: Path, tmp_path: Path) -> None:
    """``GET /jobs/{id}/export`` for coco, cvat-mask and label-studio: datumaro and label-studio-sdk read
    every image (also those where nothing was found) with the stored masks, pixel for pixel."""
    from tests.tools.venvs import run_tool

    coco = make_shapes_coco(svc.data_dir("export"), n_images=3, size=(SIZE, SIZE), seed=9, empty_images=1)
    job_id = svc.submit("predict", predict_spec(tiny_model, coco.images, formats=["coco", "label-studio"]))
    svc.wait_done(job_id)
    keys = sorted(p.stem for p in coco.images.glob("*.png"))
    stored = {k: svc.client.get(f"/images/{k}/masks", params={"job": job_id}, headers=ANNOTATOR).json()["instances"]
              for k in keys}
    assert any(stored.values()), "the model found nothing: nothing to compare"
    # the job's own files: the formats it was asked for, plus the COCO results every predict job keeps
    out = svc.job_dir(job_id) / "predictions"
    assert {"annotations", "tasks.json", "label_config.xml", "predictions.json"} <= {p.name for p in out.iterdir()}

    def fetch(fmt: str, **params: str) -> bytes:
        r = svc.client.get(f"/jobs/{job_id}/export", params={"format": fmt, **params}, headers=ANNOTATOR)
        assert r.status_code == 200, r.text
        return r.content

    def unzip(content: bytes, into: Path) -> Path:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            archive.extractall(into)
        return into

    def same_masks(found: list[dict], key: str) -> None:
        masks = sorted((a for a in found if a["type"] == "mask"), key=lambda a: (a["group"], a["id"]))
        assert len(masks) == len(stored[key]), key
        for ann, inst in zip(masks, stored[key], strict=True):
            assert ann["label"] == inst["category_name"]
            np.testing.assert_array_equal(mask_utils.decode({**ann["rle"], "counts": ann["rle"]["counts"].encode()}),
                                          mask_utils.decode({**inst["rle"], "counts": inst["rle"]["counts"].encode()}))

    for fmt, importer in (("coco", "coco_instances"), ("cvat-mask", "voc_segmentation")):
        folder = unzip(fetch(fmt), tmp_path / fmt)
        found = run_tool("datumaro", "datumaro_read.py", importer, folder)
        items = {item["id"]: item["annotations"] for item in found["items"]}
        assert sorted(items) == keys  # the empty image too
        for key in keys:
            same_masks(items[key], key)

    folder = unzip(fetch("label-studio", image_url_prefix="/data/local-files/?d=shapes/"), tmp_path / "ls")
    read = run_tool("label-studio", "labelstudio_read.py", "check", folder / "label_config.xml", folder / "tasks.json")
    assert read["errors"] == []
    assert sorted(t["image"] for t in read["tasks"]) == [f"/data/local-files/?d=shapes/{k}.png" for k in keys]
    assert {t["model_version"] for t in read["tasks"]} == {str(tiny_model)}

    results = json.loads(fetch("coco-results"))  # one format, one file: served as it is
    assert len(results) == sum(len(v) for v in stored.values())

    for bad, message in (("nope", "known: coco, coco-results"), ("csv,cvat-mask,detection", "unknown prediction format")):
        r = svc.client.get(f"/jobs/{job_id}/export", params={"format": bad}, headers=ANNOTATOR)
        assert r.status_code == 422 and message in r.json()["error"], r.text
