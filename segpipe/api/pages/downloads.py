"""The download buttons of a job's gallery: one per prediction format (of `PREDICTION_FORMATS`) that fits the
job's task, each a link to ``GET /jobs/{id}/export?format=…``; and of its "label next" view, one per
file of ``GET /jobs/{id}/label-next?format=…`` (`label_next_links`).

"Whole job" links ask for every instance (``score_threshold=0``); with "only the filtered selection"
ticked, the page's script sets ``score_threshold`` to the slider's value and, when a class is toggled
off, ``categories`` to the original ids of the classes still on — the export layer's one filter
(`segpipe.masks.formats.kept_rows`), so every format leaves out what the gallery hides.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from segpipe.masks.formats import PREDICTION_FORMATS, formats_for


def export_links(job_id: str, task: str | None, image_url_prefix: str | None = None) -> list[dict[str, str]]:
    """``[{name, description, url}]``; all formats when the task is not known yet (no image stored).
    ``image_url_prefix`` goes on the label-studio link, so its tasks point where Label Studio serves the
    images (`label_studio_prefix`)."""
    names = formats_for(task) if task else PREDICTION_FORMATS.names()
    links = []
    for name in names:
        url = f"/jobs/{quote(job_id, safe='')}/export?format={quote(name, safe='')}&score_threshold=0"
        if name == "label-studio" and image_url_prefix:
            url += f"&image_url_prefix={quote(image_url_prefix, safe='')}"
        links.append({"name": name, "description": PREDICTION_FORMATS.entry(name).description, "url": url})
    return links


def label_studio_prefix(images: str | Path | None, files_root: Path | None) -> str | None:
    """``/data/local-files/?d=REL/`` when a job's image folder lies under Label Studio's document root
    (``SEGPIPE_LABEL_STUDIO_FILES_ROOT``), so the exported tasks' image URLs resolve there; else None."""
    if images is None or files_root is None:
        return None
    try:
        relative = Path(images).resolve().relative_to(Path(files_root).resolve()).as_posix()
    except (ValueError, OSError):
        return None
    return "/data/local-files/?d=" + ("" if relative == "." else relative + "/")


LABEL_NEXT_FILES = (
    ("label-studio", "Label Studio tasks", "tasks JSON in rank order with segpipe's predictions: Import in the project"),
    ("cvat", "CVAT subset", "COCO 1.0 zip of these images in rank order with pre-labels, and label_next.txt"),
    ("json", "ranking (JSON)", "the ranking: rank, image key, uncertainty, near-duplicates left out"),
)


def label_next_links(job_id: str, top: int, image_url_prefix: str | None = None) -> list[dict[str, str]]:
    """``[{name, title, description, url}]``: the label-next files of the page's ``top`` images; the
    label-studio one with ``image_url_prefix`` (`label_studio_prefix`) as the gallery's has it."""
    links = []
    for name, title, description in LABEL_NEXT_FILES:
        url = f"/jobs/{quote(job_id, safe='')}/label-next?format={name}&top={top}"
        if name == "label-studio" and image_url_prefix:
            url += f"&image_url_prefix={quote(image_url_prefix, safe='')}"
        links.append({"name": name, "title": title, "description": description, "url": url})
    return links
