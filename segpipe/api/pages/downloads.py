"""The download buttons of a job's gallery: one per export format that fits the job's task."""

from __future__ import annotations


def export_links(job_id: str, task: str | None) -> list[dict[str, str]]:
    """``[{name, description, url}]`` for the whole job; the page adds the filter parameters for a selection."""
    return [
        {
            "name": "coco-results",
            "description": "COCO results JSON (RLE masks, boxes, scores, original category ids)",
            "url": f"/jobs/{job_id}/results",
        }
    ]
