"""Export time: 1,000 images (128×128, 5 instances each, one image in ten empty) written in each export
format by the export registry, against a baseline in the same process: decoding every mask with
pycocotools (the least any mask export has to do).

    python bench/export.py [--quick] [--images N] [--rounds R]

In-memory rows (the same rows a predict job stores) go through `segpipe.masks.formats.export` into a
temporary folder, one format at a time. Per format: images/s of the export and of the baseline, run
interleaved A B, B A (bench/common.py), and the median ratio export/baseline (< 1: slower than just
decoding). ``--quick``: 200 images, 2 rounds. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py only
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import emit, interleave, machine, print_table  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from segpipe.masks import encode  # noqa: E402
from segpipe.masks.formats import ExportContext, export  # noqa: E402
from segpipe.masks.rows import ExportImage, PredictionRow  # noqa: E402

SIZE = 128
CATEGORIES = [(1, "person"), (3, "car"), (18, "dog"), (44, "bottle")]
FORMATS = ["coco-results", "coco", "polygons", "png", "cvat-mask", "label-studio"]


def make_images(n: int, seed: int = 0) -> list[ExportImage]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = []
    for i in range(n):
        rows = []
        if i % 10:
            for k in range(5):
                cy, cx, r = [*rng.integers(16, SIZE - 16, 2).tolist(), int(rng.integers(5, 16))]
                mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
                rle = encode.mask_to_rle(mask)
                cid, name = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
                rows.append(PredictionRow("", str(i), k, cid, name, float(rng.uniform(0.5, 1)),
                                          encode.rle_to_box(rle), rle, SIZE, SIZE))
        images.append(ExportImage(str(i), f"batch/{i:05d}.jpg", SIZE, SIZE, rows))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.images or (200 if args.quick else 1000)
    rounds = args.rounds or (2 if args.quick else 3)
    images = make_images(n)
    ctx = ExportContext(task="instance", categories=CATEGORIES, score_threshold=0.0)
    scratch = Path(tempfile.mkdtemp(prefix="segpipe-bench-export-"))

    def decode_all() -> int:
        for image in images:
            for row in image.rows:
                mask_utils.decode({"size": row.rle["size"], "counts": row.rle["counts"].encode()})
        return len(images)

    table, figures = [], {"machine": machine(), "images": n, "instances": sum(len(i.rows) for i in images)}
    try:
        for fmt in FORMATS:
            def run(fmt: str = fmt) -> int:
                shutil.rmtree(scratch / fmt, ignore_errors=True)
                export(images, [fmt], ctx, scratch / fmt)
                return len(images)

            result = interleave(run, decode_all, rounds)
            seconds = n / result["a_per_s"]
            table.append([fmt, f"{seconds:.2f}", f"{result['a_per_s']:.0f}", f"{result['b_per_s']:.0f}",
                          f"{result['ratio']:.3f}"])
            figures[fmt] = {"seconds": round(seconds, 3), "images_per_s": round(result["a_per_s"], 1),
                            "ratio_vs_decode": round(result["ratio"], 4)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    m = figures["machine"]
    print_table(f"export of {n} images × ~5 instances ({m['cpu_cores']} cores, {m['torch_threads']} torch thread, "
                f"{m['device']}, load {m['load_avg_1m']})",
                ["format", f"s / {n} images", "images/s", "decode-only images/s", "ratio"], table)
    emit(figures)


if __name__ == "__main__":
    main()
