"""Writes predictions to files, per image as they come, in the formats a user asked for.

Layout under ``out_dir``::

    predictions.json         coco: COCO results (compressed RLE masks, bbox, score, original category_id)
    masks/<name>.png         png: semantic palette label map | binary 0/255 | instance-id map
    polygons/<name>.json     polygons: {image_id, height, width, objects: [{category_id, polygons, …}]}
    overlays/<name>.png      overlay: the prediction drawn on the image
    predictions.csv / .jsonl csv / json: classification top-k per image (json also works for every task)

``<name>`` is the image's path relative to the input folder, without suffix (so nested folders
cannot collide).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.data.categories import CategoryMap
from segpipe.masks import encode
from segpipe.paths import output_path
from segpipe.prediction import Prediction

PNG_KIND = {"semantic": "palette label map", "binary": "0/255 mask", "instance": "instance-id map"}


class PredictionWriter:
    def __init__(
        self,
        out_dir: str | Path,
        formats: list[str],
        category_map: CategoryMap,
        task: str,
        topk: int = 5,
    ) -> None:
        self.out = Path(out_dir)
        self.formats = list(dict.fromkeys(formats))
        self.category_map = category_map
        self.task = task
        self.topk = topk
        self.images = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self._coco = encode.CocoResultsWriter(self.out / "predictions.json", category_map) if "coco" in formats else None
        self._csv_file = None
        self._csv: Any = None
        self._jsonl = (self.out / "predictions.jsonl").open("w") if "json" in formats else None

    def write(self, name: str, image: np.ndarray | None, pred: Prediction) -> list[Path]:
        """Write one image's prediction in every format; returns the files written."""
        written: list[Path] = []
        if self._coco is not None:
            self._coco.add(pred)
        if "png" in self.formats and self.task in PNG_KIND:
            written.append(self._png(name, pred))
        if "polygons" in self.formats and self.task in ("semantic", "binary", "instance"):
            written.append(encode.write_polygons_json(pred, self.category_map, self._path("polygons", name, ".json")))
        if "overlay" in self.formats and image is not None:
            from segpipe.masks import render

            written.append(render.save_overlay(image, pred, self.category_map, self._path("overlays", name, ".png")))
        if "csv" in self.formats and self.task == "classification":
            self._csv_rows(name, pred)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(self._json_record(name, pred)) + "\n")
        self.images += 1
        return written

    def close(self) -> dict[str, Any]:
        """Finish the streamed files; returns a summary (counts and paths)."""
        summary: dict[str, Any] = {"images": self.images, "out_dir": str(self.out), "formats": self.formats}
        if self._coco is not None:
            self._coco.close()
            summary["coco_results"] = self._coco.count
        if self._csv_file is not None:
            self._csv_file.close()
        if self._jsonl is not None:
            self._jsonl.close()
        return summary

    def flush(self) -> None:
        """Push the streamed csv/jsonl lines to the file (a worker killed later keeps them)."""
        for f in (self._csv_file, self._jsonl):
            if f is not None:
                f.flush()

    def abort(self) -> None:
        if self._coco is not None:
            self._coco.abort()
        for f in (self._csv_file, self._jsonl):
            if f is not None:
                f.close()

    def _path(self, folder: str, name: str, suffix: str) -> Path:
        # `name` comes from the data (a COCO file_name): it must not leave out_dir, even through a symlink
        path = output_path(self.out, f"{folder}/{name}{suffix}", what=f"output for image {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _png(self, name: str, pred: Prediction) -> Path:
        path = self._path("masks", name, ".png")
        if self.task == "instance":
            return encode.id_map_to_png(encode.instances_to_id_map(pred.instances, pred.height, pred.width), path)
        assert pred.label_map is not None  # adapters always fill it for semantic/binary
        if self.task == "binary":
            return encode.binary_to_png(pred.label_map, path)
        return encode.label_map_to_png(pred.label_map, path)

    def _csv_rows(self, name: str, pred: Prediction) -> None:
        rows = encode.topk_rows(pred, self.category_map, self.topk)
        if self._csv is None:
            self._csv_file = (self.out / "predictions.csv").open("w", newline="")
            self._csv = csv.DictWriter(self._csv_file, fieldnames=["file", *rows[0].keys()] if rows else ["file"])
            self._csv.writeheader()
        for row in rows:
            self._csv.writerow({"file": name, **row})

    def _json_record(self, name: str, pred: Prediction) -> dict[str, Any]:
        record: dict[str, Any] = {"file": name, "image_id": encode.plain_image_id(pred.image_id)}
        if self.task == "classification":
            record["topk"] = encode.topk_rows(pred, self.category_map, self.topk)
        else:
            record["results"] = encode.prediction_to_coco_results(pred, self.category_map)
        return record
