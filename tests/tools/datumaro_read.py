"""Run INSIDE the datumaro venv (not segpipe's): import a dataset with datumaro's own importer and print
what it found as JSON, so segpipe's tests (in segpipe's venv) can compare it with the stored predictions.

    python datumaro_read.py FORMAT PATH   →  {"labels": [...], "items": [{"id", "annotations": [...]}]}

Each annotation: ``{"type", "label", "id", "group", "score", "bbox", "rle"}`` with ``label`` the label
NAME and ``rle`` the mask as compressed COCO RLE (pycocotools) or null.
"""

import json
import sys

import numpy as np
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
from pycocotools import mask as mask_utils


def main() -> None:
    fmt, path = sys.argv[1], sys.argv[2]
    dataset = Dataset.import_from(path, fmt)
    categories = dataset.categories()[AnnotationType.label]
    names = [c.name for c in categories.items]
    items = []
    for item in dataset:
        anns = []
        for ann in item.annotations:
            entry = {"type": ann.type.name, "label": names[ann.label] if getattr(ann, "label", None) is not None else None,
                     "id": ann.id, "group": ann.group, "score": ann.attributes.get("score"),
                     "bbox": None, "rle": None}
            if ann.type == AnnotationType.mask:
                image = np.asfortranarray(ann.image.astype(np.uint8))
                rle = mask_utils.encode(image)
                entry["rle"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
            if ann.type in (AnnotationType.bbox, AnnotationType.polygon, AnnotationType.mask):
                entry["bbox"] = [float(v) for v in ann.get_bbox()]
            if ann.type == AnnotationType.polygon:
                entry["points"] = [float(v) for v in ann.points]
            anns.append(entry)
        size = item.media.size if item.media is not None and item.media.has_size else None
        items.append({"id": item.id, "subset": item.subset, "size": list(size) if size else None, "annotations": anns})
    print(json.dumps({"labels": names, "items": items}))


if __name__ == "__main__":
    main()
