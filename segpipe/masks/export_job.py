"""A predict job's stored masks → files per image (``segpipe masks``): COCO results JSON with RLE,
polygons JSON, or PNG (instance-id map; label map for semantic/binary jobs)."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path
from typing import Any

from segpipe.errors import ConfigError
from segpipe.masks.stored import row_to_result, rows_to_png, rows_to_polygons, stream_results_json

FORMATS = ("rle", "polygons", "png")


def job_task(stores: Any, job_id: str) -> str | None:
    """The task kind a predict job's model was trained for (from its checkpoint), if it can be found."""
    from segpipe.engine.predict import resolve_checkpoint
    from segpipe.engine.checkpoint import load_checkpoint
    from segpipe.jobspec import load_spec
    from segpipe.pipeline import resolve_model_ref

    job = stores.jobs.get(job_id)
    if job.kind != "predict":
        raise ConfigError(f"job {job_id} is a {job.kind} job; masks come from predict jobs")
    try:
        spec = load_spec(job.kind, job.config)
        return load_checkpoint(resolve_checkpoint(resolve_model_ref(spec.model, stores))).get("task")
    except Exception:  # noqa: BLE001 - the task only refines PNG values; rows still export without it
        return None


def export_job_masks(stores: Any, job_id: str, out_dir: str | Path, fmt: str) -> int:
    """Write one file per image (``rle``: also one ``results.json`` for the whole job); returns files written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown mask format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = job_task(stores, job_id)
    written = 0
    if fmt == "rle":
        with (out / "results.json").open("wb") as f:
            for chunk in stream_results_json(stores.predictions.iter_job(job_id)):
                f.write(chunk)
        written += 1
    for key, group in groupby(stores.predictions.iter_job(job_id), key=lambda r: r.image_key):
        rows = list(group)
        target = out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "png":
            if any(r.rle for r in rows):
                target.with_suffix(".png").write_bytes(rows_to_png(rows, task))
                written += 1
        elif fmt == "polygons":
            target.with_suffix(".json").write_text(json.dumps({"image": key, "objects": rows_to_polygons(rows)}))
            written += 1
        else:
            target.with_suffix(".json").write_text(json.dumps([row_to_result(r) for r in rows]))
            written += 1
    return written
