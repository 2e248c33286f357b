"""The download buttons of a job's gallery: one per export format (of the export registry) that fits the
job's task, each a link to ``GET /jobs/{id}/export?format=…``.

"Whole job" links ask for every instance (``score_threshold=0``); with "only the filtered selection"
ticked, the page's script sets ``score_threshold`` to the slider's value and, when a class is toggled
off, ``categories`` to the original ids of the classes still on — the export layer's one filter
(`segpipe.masks.formats.kept_rows`), so every format leaves out what the gallery hides.
"""

from __future__ import annotations

from urllib.parse import quote

from segpipe.masks.formats import FORMATS, formats_for


def export_links(job_id: str, task: str | None) -> list[dict[str, str]]:
    """``[{name, description, url}]``; all formats when the task is not known yet (no image stored)."""
    names = formats_for(task) if task else FORMATS.names()
    return [
        {
            "name": name,
            "description": FORMATS.entry(name).description,
            "url": f"/jobs/{quote(job_id, safe='')}/export?format={quote(name, safe='')}&score_threshold=0",
        }
        for name in names
    ]
