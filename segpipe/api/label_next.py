"""What to label next, where annotators work: a predict job's ranking (`segpipe.ranking`) as a list, as a
Label Studio tasks file, and as a CVAT subset, each holding the top images in rank order with the job's
predictions as pre-labels. ``GET /jobs/{id}/label-next`` and the review page ``/ui/jobs/{id}/label-next``
both come here.

The files go through the one export layer (`segpipe.jobs.exports.export_job` with the ranking's keys):

- ``label-studio``: the ``label-studio`` writer's ``tasks.json``, one task per image in rank order (Label
  Studio numbers imported tasks in file order, and its Data Manager lists them by that number), each
  task's data carrying ``segpipe_rank`` (1 first) and ``segpipe_uncertainty``, columns to sort by;
- ``cvat``: a zip in CVAT's "COCO 1.0" layout from the ``coco`` writer — ``annotations/instances_default.json``
  listing the images in rank order with their pre-labels, ``images/`` with the image files, and
  ``label_next.txt``, the file names one a line in rank order.

Everything is read from the store and the model's small files (`job_source` with no checkpoint fallback):
this module never imports torch.
"""

from __future__ import annotations

import contextlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.api.deps import ApiContext
from segpipe.api.errors import ApiError
from segpipe.errors import NotFoundError
from segpipe.job_kinds import PREDICTIONS, has
from segpipe.ranking.select import Candidate, Ranking, rank

FILE_FORMATS = ("label-studio", "cvat")
FORMATS = ("json", *FILE_FORMATS)
# the export writer behind each file format
_WRITERS = {"label-studio": "label-studio", "cvat": "coco"}


@dataclass(frozen=True)
class RankedJob:
    """A job's ranking: the images chosen (most uncertain first), the near-duplicates left out, and how
    many of its images carry an uncertainty at all."""

    job_id: str
    ranking: Ranking
    scored: int

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.ranking.chosen]

    def as_json(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "images": [{"rank": i + 1, "image_key": c.key, "uncertainty": c.uncertainty}
                       for i, c in enumerate(self.ranking.chosen)],
            "near_duplicates": [{"image_key": k, "duplicate_of": v} for k, v in self.ranking.duplicates.items()],
            "scored": self.scored,
        }


def ranked_job(ctx: ApiContext, job_id: str, top: int, min_distance: int) -> RankedJob:
    """The ``top`` most uncertain images of a predict job (404 unknown job, 409 not a predict job)."""
    job = ctx.stores.jobs.get(job_id)
    if not has(job.kind, PREDICTIONS):
        raise ApiError(409, f"job {job_id} is a {job.kind} job; only predict jobs rank images to label next")
    candidates = [Candidate(r.key, r.uncertainty, int(r.fingerprint, 16) if r.fingerprint else None)
                  for r in ctx.stores.predictions.ranked(job_id)]
    return RankedJob(job_id, rank(candidates, top, min_distance), len(candidates))


def write_file(ctx: ApiContext, ranked: RankedJob, fmt: str, scratch: Path, **options: Any) -> Path:
    """Write the ranking's file in ``fmt`` (one of `FILE_FORMATS`) under ``scratch``; returns its path.
    ``options`` go to the export context (score threshold, image URL prefix, segmentation…).
    `ConfigError` (422) when the format does not fit the job's task or its model's classes cannot be read."""
    from segpipe.jobs.exports import export_job, job_source

    if fmt not in FILE_FORMATS:
        raise ApiError(422, f"label-next format {fmt!r} is not a file format; use one of {', '.join(FILE_FORMATS)}")
    files: dict[str, tuple[str, Path]] = {}
    for key in ranked.keys:
        # the image file may be gone: the export then names it after its key, without pixels
        with contextlib.suppress(NotFoundError):
            files[key] = ctx.images.named(ranked.job_id, key)
    source = job_source(ctx.stores, ranked.job_id, files=files, checkpoint_fallback=False)
    out = scratch / "out"
    if fmt == "cvat":
        options = {"with_images": True, **options}
        # pre-labels an annotator corrects: overlapping duplicates go, as in the cvat-mask export
        options.setdefault("suppress_duplicates", True)
    task_data = {c.key: {"segpipe_rank": i + 1, "segpipe_uncertainty": round(c.uncertainty, 6)}
                 for i, c in enumerate(ranked.ranking.chosen)}
    export_job(ctx.stores, ranked.job_id, out, [_WRITERS[fmt]], source=source, keys=ranked.keys,
               task_data=task_data, **options)
    if fmt == "label-studio":
        return out / "tasks.json"
    names = [files.get(key, (key, None))[0] for key in ranked.keys]
    (out / "label_next.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    archive = scratch / f"{ranked.job_id}-label-next-cvat.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(out.rglob("*")):
            zipped.write(path, path.relative_to(out).as_posix())
    return archive


def download_name(job_id: str, fmt: str, count: int) -> str:
    """The file name a download is saved under."""
    return f"{job_id}-label-next-{count}" + (".json" if fmt == "label-studio" else ".zip")
