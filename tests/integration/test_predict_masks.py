"""A predict job submitted over HTTP, run by a real worker, its masks fetched per image in every format.

The three formats are decoded here with pycocotools and OpenCV (not segpipe's own decoders) and
compared with each other and with what the job wrote to disk: RLE and PNG exactly, polygons by IoU.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segpipe.data.synthetic import make_shapes_coco
from tests.integration.conftest import ANNOTATOR, Service, predict_spec

SIZE = 32


def _decode_png(content: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "not a PNG"
    return image


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

        # PNG: byte-for-byte the same picture as the job's masks/<key>.png (binary: 0 / 255)
        png = svc.client.get(f"/images/{key}/masks", params={**query, "format": "png"}, headers=ANNOTATOR)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png", png.text
        served = _decode_png(png.content)
        on_disk = cv2.imread(str(out / "masks" / f"{key}.png"), cv2.IMREAD_UNCHANGED)
        assert on_disk is not None, f"the job wrote no masks/{key}.png"
        assert served.dtype == on_disk.dtype and np.array_equal(served, on_disk)
        assert np.array_equal(served > 0, union)

        # polygons: the same instances, rasterising back to their RLE masks
        poly = svc.client.get(f"/images/{key}/masks", params={**query, "format": "polygons"}, headers=ANNOTATOR)
        assert poly.status_code == 200, poly.text
        instances = poly.json()["instances"]
        assert [i["instance"] for i in instances] == [i["instance"] for i in body["instances"]]
        for inst, mask in zip(instances, masks, strict=True):
            drawn = _rasterize(inst["polygons"], SIZE, SIZE)
            iou = (drawn & mask).sum() / max((drawn | mask).sum(), 1)
            assert iou >= 0.95, f"image {key} instance {inst['instance']}: polygons IoU {iou:.3f}"
        foreground_images += bool(union.any())
    assert foreground_images >= 1, "the model found no foreground in any image: nothing was compared"

    missing = svc.client.get("/images/no-such-image/masks", params={"job": job_id}, headers=ANNOTATOR)
    assert missing.status_code == 404
