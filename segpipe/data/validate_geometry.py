"""Pure checks of one annotation's geometry against its image size: COCO polygons, RLE and bbox.

Each returns findings as ``(severity, code, words)``; the caller adds the file and ids. Sizes are
(height, width) in pixels; a size of None (unknown image) skips the checks that need it.

Compressed RLE strings are parsed here rather than handed to pycocotools: its C decoder trusts the
counts and writes past the mask when they do not add up to height × width.
"""

from __future__ import annotations

from typing import Any

from segpipe.data.validate_common import is_int, is_number, kind_of

SLACK = 1.0  # pixels a bbox or polygon may reach past the image border (float rounding in tools)

Finding = tuple[str, str, str]  # (severity, code, words)


def bbox_problem(bbox: Any, size: tuple[int, int] | None) -> Finding | None:
    """A COCO bbox [x, y, width, height] (pixels) must have positive sides and lie in the image."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        return ("error", "bad-bbox", f"bbox is {bbox!r}, needs 4 numbers [x, y, width, height]")
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return ("error", "bad-bbox", f"bbox {bbox} has width {w} and height {h}, both must be > 0")
    if size is not None:
        height, width = size
        if x < -SLACK or y < -SLACK or x + w > width + SLACK or y + h > height + SLACK:
            return ("error", "bbox-outside-image",
                    f"bbox {bbox} (x, y, w, h) reaches outside the {width}×{height} (w×h) image")
    return None


def segmentation_problems(seg: Any, size: tuple[int, int] | None) -> tuple[list[Finding], bool]:
    """Check a COCO ``segmentation`` (polygons or RLE). Returns (findings, empty): `empty` is True
    when the segmentation is well formed but covers no pixel ([], zero-area polygons, RLE without
    foreground); judging that is the caller's business (it depends on the task and the bbox)."""
    if isinstance(seg, list):
        return _polygons(seg, size)
    if isinstance(seg, dict):
        return _rle(seg, size)
    return [("error", "bad-segmentation", (f"segmentation is {kind_of(seg)}, needs a list of polygons or an "
                                           "RLE object {size, counts}"))], False


def _polygons(seg: list[Any], size: tuple[int, int] | None) -> tuple[list[Finding], bool]:
    if not seg:
        return [], True
    if all(is_number(v) for v in seg):
        return [("error", "bad-polygon", (f"segmentation is a flat list of {len(seg)} numbers; polygons are "
                                          "a list of lists: [[x1, y1, x2, y2, ...], ...]"))], False
    findings: list[Finding] = []
    area = 0.0
    for k, poly in enumerate(seg):
        name = "polygon" if len(seg) == 1 else f"polygon {k}"
        if not isinstance(poly, list):
            findings.append(("error", "bad-polygon", f"{name} is {kind_of(poly)}, needs a list of x, y coordinates"))
            continue
        bad = [v for v in poly if not is_number(v)]
        if bad:
            findings.append(("error", "bad-polygon", f"{name} has a coordinate {bad[0]!r}, needs finite numbers"))
        elif len(poly) < 6 or len(poly) % 2:
            findings.append(("error", "bad-polygon",
                             f"{name} has {len(poly)} coordinates, needs an even number ≥ 6 (x, y pairs)"))
        else:
            xs, ys = poly[0::2], poly[1::2]
            area += abs(_shoelace(xs, ys))
            if size is not None and _outside(xs, ys, size):
                height, width = size
                findings.append(("warning", "polygon-outside-image",
                                 (f"{name} spans x {min(xs)}..{max(xs)}, y {min(ys)}..{max(ys)}, beyond the "
                                  f"{width}×{height} (w×h) image; it is clipped")))
    return findings, not findings and area == 0.0


def _shoelace(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    return 0.5 * sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))


def _outside(xs: list[float], ys: list[float], size: tuple[int, int]) -> bool:
    height, width = size
    return min(xs) < -SLACK or min(ys) < -SLACK or max(xs) > width + SLACK or max(ys) > height + SLACK


def _rle(seg: dict[str, Any], size: tuple[int, int] | None) -> tuple[list[Finding], bool]:
    rle_size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(is_int(v) and v >= 0 for v in rle_size)):
        return [("error", "bad-rle", f"RLE size is {rle_size!r}, needs [height, width]")], False
    h, w = rle_size
    if size is not None and (h, w) != tuple(size):
        return [("error", "rle-size-mismatch", f"RLE size is {w}×{h} (w×h), the image is {size[1]}×{size[0]}")], False
    if isinstance(counts, str):
        runs = parse_compressed_counts(counts)
        if isinstance(runs, str):
            return [("error", "bad-rle", f"RLE counts do not parse: {runs}")], False
    elif isinstance(counts, list):
        bad = [c for c in counts if not (is_int(c) and c >= 0)]
        if bad:
            return [("error", "bad-rle", f"RLE counts hold {bad[0]!r}, needs run lengths ≥ 0")], False
        runs = counts
    else:
        return [("error", "bad-rle", (f"RLE counts is {kind_of(counts)}, needs a string (compressed) or a "
                                      "list of run lengths"))], False
    if sum(runs) != h * w:
        return [("error", "bad-rle", f"RLE counts cover {sum(runs)} pixels, its size {w}×{h} has {h * w}")], False
    return [], sum(runs[1::2]) == 0  # runs alternate background, foreground, starting with background


def parse_compressed_counts(text: str) -> list[int] | str:
    """Run lengths of a COCO compressed RLE string, or a description of why it is malformed.

    The format (pycocotools ``rleToString``): each number is LEB128-like, 5 bits per character
    offset by 48, bit 0x20 = more characters follow, bit 0x10 of the last one = negative; from the
    fourth number on, each is stored as the difference to the number two places before it.
    """
    runs: list[int] = []
    p, n = 0, len(text)
    while p < n:
        value, shift, more = 0, 0, True
        while more:
            if p >= n:
                return "the string ends in the middle of a number"
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return f"character {text[p]!r} at position {p} is outside the RLE alphabet '0'..'o'"
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                value -= 1 << shift  # sign-extend
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return f"run {len(runs)} has negative length {value}"
        runs.append(value)
    return runs
