"""Finds the source image file behind a predict job's image key, confined to the data roots.

A folder job keys images by their path relative to ``images`` without suffix; a job with a COCO file
keys them by COCO image id (`segpipe.engine.predict.image_items`). The reverse lookup here never lists
the folder: it tries the known suffixes, or looks the id up in the COCO file (read once per job and
cached, ids → file names only). Every candidate is resolved (symlinks too) and must stay inside the
job's image folder and the configured data roots.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from segpipe.data.images import IMAGE_SUFFIXES
from segpipe.errors import ConfigError, NotFoundError
from segpipe.job_kinds import PREDICTIONS, has
from segpipe.jobs.specs import PredictSpec, load_spec
from segpipe.paths import PathNotAllowed, confine
from segpipe.stores import Stores

# Browsers draw these as they are; anything else (TIFF) is converted to PNG when served.
BROWSER_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                 ".gif": "image/gif", ".bmp": "image/bmp"}


class JobImageFiles:
    """Thread-safe resolver of (job, image key) → image file, with a small per-job cache."""

    def __init__(self, stores: Stores, roots: list[Path], cached_jobs: int = 8) -> None:
        self.stores = stores
        self.roots = roots
        self._specs: OrderedDict[str, tuple[Path, dict[str, str] | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._cached_jobs = cached_jobs

    def _job_source(self, job_id: str) -> tuple[Path, dict[str, str] | None]:
        with self._lock:
            if job_id in self._specs:
                self._specs.move_to_end(job_id)
                return self._specs[job_id]
        job = self.stores.jobs.get(job_id)  # NotFoundError → 404
        if not has(job.kind, PREDICTIONS):
            raise ConfigError(f"job {job_id} is a {job.kind} job; only predict jobs have images")
        spec = load_spec(job.kind, job.config, source=f"job {job_id}")
        if not isinstance(spec, PredictSpec):
            raise ConfigError(f"job {job_id}: its config is not a predict job document")
        folder = confine(spec.images, self.roots, what=f"job {job_id} images")
        names = None
        if spec.annotations is not None:
            names = _coco_file_names(confine(spec.annotations, self.roots, what=f"job {job_id} annotations"))
        with self._lock:
            self._specs[job_id] = (folder, names)
            while len(self._specs) > self._cached_jobs:
                self._specs.popitem(last=False)
        return folder, names

    def path(self, job_id: str, image_key: str) -> Path:
        """The image file; NotFoundError (404) naming the key, PathNotAllowed (403) for a key leaving the folder."""
        return self.named(job_id, image_key)[1]

    def named(self, job_id: str, image_key: str) -> tuple[str, Path]:
        """`path`, with the file's name relative to the job's image folder (what an export names it by)."""
        folder, names = self._job_source(job_id)
        if names is not None:
            name = names.get(image_key)
            if name is None:
                raise NotFoundError(f"job {job_id}: image id {image_key!r} is not in its COCO file")
            candidates = [name]
        else:
            if "\\" in image_key or "\x00" in image_key:
                raise NotFoundError(f"job {job_id}: no image {image_key!r}")
            candidates = [f"{image_key}{suffix}" for suffix in IMAGE_SUFFIXES]
            candidates += [f"{image_key}{suffix.upper()}" for suffix in IMAGE_SUFFIXES]
        for candidate in candidates:
            resolved = (folder / candidate).resolve(strict=False)
            if not resolved.is_relative_to(folder):
                raise PathNotAllowed(f"job {job_id}: image {image_key!r} leaves the job's image folder {folder}")
            confine(resolved, self.roots, what=f"job {job_id} image {image_key!r}")
            if resolved.is_file():
                return candidate, resolved
        raise NotFoundError(f"job {job_id}: image {image_key!r} is no longer in {folder}")


def _coco_file_names(path: Path) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            dataset = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the job's COCO file ({e})") from None
    return {str(info["id"]): str(info["file_name"]) for info in dataset.get("images", [])}
