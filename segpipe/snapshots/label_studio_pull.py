"""A Label Studio project through its own export API, its images through the ML backend's fetch rules.

The export (``GET /api/projects/{id}/export?exportType=JSON``) holds every task with its annotations;
each task's image is read by `read_task_image` — the one door the ML backend uses too — so the same
host check, data-root confinement and size limits apply, with the configured token of either kind.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from segpipe.errors import ConfigError, DataError
from segpipe.labelstudio.client import LabelStudioClient
from segpipe.settings import Settings
from segpipe.snapshots.draft import Draft
from segpipe.snapshots.label_studio import draft_from_export

_IMAGE_VALUE = re.compile(r"<Image\b[^>]*\bvalue=\"\$([A-Za-z0-9_]+)\"", re.IGNORECASE)


def read_project(settings: Settings, project_id: int, categories: Sequence[str],
                 category_ids: Sequence[int] | None = None) -> Draft:
    """The project's annotated tasks as a draft (rules in `segpipe.snapshots.label_studio`); ``category_ids``:
    the model's COCO ids of ``categories`` (None: 1..N)."""
    from segpipe.api.errors import ApiError
    from segpipe.api.labelstudio.task_images import read_task_image

    if not settings.label_studio_url or not settings.label_studio_token:
        raise ConfigError("pulling from Label Studio needs SEGPIPE_LABEL_STUDIO_URL and SEGPIPE_LABEL_STUDIO_TOKEN")
    with LabelStudioClient(settings.label_studio_url, settings.label_studio_token) as ls:
        project = ls.get(f"/api/projects/{project_id}")
        tasks = ls.get(f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
    key = image_field(str(project.get("label_config") or ""))

    def load(task: dict[str, Any]) -> tuple[str, bytes]:
        source = (task.get("data") or {}).get(key)
        try:
            image = read_task_image(source, settings, task.get("id"))
        except ApiError as e:
            raise DataError(f"Label Studio project {project_id}: {e.message}") from None
        return f"task-{task.get('id')}{image.suffix}", image.content

    return draft_from_export(list(tasks or []), categories, load, category_ids)


def image_field(label_config: str) -> str:
    """The task data field the labeling config's ``<Image value="$…">`` reads."""
    found = _IMAGE_VALUE.search(label_config)
    if found is None:
        raise ConfigError("the project's labeling config has no <Image value=\"$…\"> to read images from")
    return found.group(1)
