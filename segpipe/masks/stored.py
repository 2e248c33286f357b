"""Stored rows → a COCO results JSON stream (``GET /jobs/{id}/results``), piece by piece.

Everything else about stored predictions goes through the export registry (`segpipe.masks.formats`);
this stream stays because it is the hot, row-at-a-time path of the results endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from segpipe.masks.formats.coco import row_to_result
from segpipe.masks.rows import PredictionRow


def coco_image_id(image_key: str) -> int | str:
    """Image keys are stored as text; COCO image ids go back out as ints."""
    return int(image_key) if image_key.isdigit() else image_key


def stream_results_json(rows: Iterable[PredictionRow]) -> Iterator[bytes]:
    """A COCO results JSON array, produced piece by piece (for streamed HTTP responses and files)."""
    yield b"["
    first = True
    for row in rows:
        yield (b"\n" if first else b",\n") + json.dumps(row_to_result(row, coco_image_id(row.image_key)),
                                                        separators=(",", ":")).encode()
        first = False
    yield b"\n]\n"
