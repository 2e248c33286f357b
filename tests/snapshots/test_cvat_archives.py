"""CVAT export archives written by datumaro (the exporters CVAT itself runs) become snapshots whose
masks are pixel-equal to what was annotated."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segpipe.settings import Settings
from segpipe.snapshots.formats import PullContext
from segpipe.snapshots.pull import pull
from segpipe.snapshots.store import SnapshotStore
from tests.tools.venvs import run_tool

LABELS = ["square", "blob", "ring"]


def _objects() -> dict[str, list[tuple[str, np.ndarray]]]:
    """Two images, overlapping-free objects of three labels, one with a hole (the ring)."""
    h, w = 48, 64
    square = np.zeros((h, w), bool)
    square[10:30, 5:25] = True
    blob = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    blob[(yy - 30) ** 2 + (xx - 47) ** 2 < 100] = True
    ring = np.zeros((h, w), bool)
    ring[(yy - 24) ** 2 + (xx - 32) ** 2 < 196] = True
    ring[(yy - 24) ** 2 + (xx - 32) ** 2 < 36] = False
    small = np.zeros((h, w), bool)
    small[2:6, 50:60] = True
    return {"first": [("square", square), ("blob", blob)], "second": [("ring", ring), ("square", small)]}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cvat")
    rng = np.random.default_rng(0)
    items = []
    for item_id, objects in _objects().items():
        image = root / f"{item_id}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
        entries = []
        for n, (label, mask) in enumerate(objects):
            path = root / f"{item_id}-{n}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(path)
            entries.append({"label": label, "mask": str(path)})
        items.append({"id": item_id, "image": str(image), "objects": entries})
    path = root / "spec.json"
    # CVAT writes its labels' own colours into labelmap.txt (datumaro's default would be VOC's palette)
    colours = {"square": [250, 50, 83], "blob": [51, 221, 255], "ring": [184, 61, 245]}
    path.write_text(json.dumps({"labels": LABELS, "colours": colours, "items": items}))
    return path


def _masks_by_image(snapshot_path: str) -> dict[str, list[tuple[str, np.ndarray]]]:
    coco = json.loads((Path(snapshot_path) / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i for i in coco["images"]}
    found: dict[str, list[tuple[str, np.ndarray]]] = {}
    for ann in coco["annotations"]:
        image = files[ann["image_id"]]
        seg = ann["segmentation"]
        rle = seg if isinstance(seg, dict) else mask_utils.merge(mask_utils.frPyObjects(seg, image["height"],
                                                                                         image["width"]))
        stem = Path(image["file_name"]).stem
        found.setdefault(stem, []).append((names[ann["category_id"]], mask_utils.decode(rle).astype(bool)))
    return found


@pytest.mark.parametrize("exporter,fmt,own_colours", [
    ("coco_instances", "cvat-coco", True), ("voc_segmentation", "cvat-mask", True),
    ("voc_segmentation", "cvat-mask", False), ("cvat", "cvat-images", True)])
def test_datumaro_written_archive_becomes_a_pixel_equal_snapshot(tmp_path: Path, spec: Path, exporter: str,
                                                                 fmt: str, own_colours: bool) -> None:
    archive = tmp_path / f"{exporter}.zip"
    if not own_colours:  # no colours in labelmap.txt: VOC's palette by position
        plain = json.loads(spec.read_text())
        plain.pop("colours")
        spec = tmp_path / "plain.json"
        spec.write_text(json.dumps(plain))
    run_tool("datumaro", "datumaro_write.py", exporter, spec, archive)
    if fmt == "cvat-mask" and own_colours:  # the labels' own colours, as CVAT writes them
        with zipfile.ZipFile(archive) as z:
            assert "square:250,50,83" in z.read("labelmap.txt").decode()
    snapshot, new = pull(SnapshotStore(tmp_path / "artifacts"), fmt, str(archive), PullContext(Settings()))
    assert new and snapshot.images == 2 and snapshot.annotations == 4
    got = _masks_by_image(snapshot.path)
    for item_id, objects in _objects().items():
        expected = sorted((label, mask.tobytes()) for label, mask in objects)
        assert sorted((label, mask.tobytes()) for label, mask in got[item_id]) == expected, item_id
    images = sorted(p.name for p in (Path(snapshot.path) / "images").rglob("*") if p.is_file())
    assert [Path(n).stem for n in images] == ["first", "second"]
