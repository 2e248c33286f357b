"""Box-to-mask latency: one drawn box → the object's mask, with the model already in memory (the
worker's model cache), against the model's full inference on the same image (the baseline a
pre-label takes), in the same process, interleaved.

    python bench/box_to_mask.py [--quick] [--size 96,512] [--threads 1]

The model is the demo's light Mask R-CNN (ResNet-18 FPN) with random weights — latency does not depend
on what the weights learned — at the demo's 96 px and at a photo-sized 512 px. Prints p50/p99 per size
and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/ scripts are not modules

from segpipe.config import ModelConfig  # noqa: E402
from segpipe.models.box_prompt import mask_for_box  # noqa: E402
from segpipe.models.registry import build_model  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(size: int, requests: int, rng: np.random.Generator) -> dict[str, float]:
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", min_size=size, max_size=size,
                                    rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
                                    box_detections_per_img=10), "instance", 4)
    model.eval()
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    box_ms, full_ms = [], []
    mask_for_box(model, image, (5, 5, size / 2, size / 2))  # warm-up both paths
    with torch.no_grad():
        model([tensor])
    for i in range(requests):
        x1, y1 = rng.uniform(0, size * 0.6, 2)
        w, h = rng.uniform(size * 0.1, size * 0.4, 2)
        order = ("box", "full") if i % 2 == 0 else ("full", "box")
        for what in order:
            start = time.perf_counter()
            if what == "box":
                mask_for_box(model, image, (x1, y1, x1 + w, y1 + h))
                box_ms.append((time.perf_counter() - start) * 1000)
            else:
                with torch.no_grad():
                    model([tensor])
                full_ms.append((time.perf_counter() - start) * 1000)
    return {"size": size, "requests": requests, "box_p50_ms": percentile(box_ms, 50),
            "box_p99_ms": percentile(box_ms, 99), "full_p50_ms": percentile(full_ms, 50),
            "full_p99_ms": percentile(full_ms, 99),
            "speedup_p50": statistics.median(full_ms) / statistics.median(box_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", default="96,512")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = [measure(int(s), 20 if args.quick else 200, rng) for s in args.size.split(",")]
    print(f"{'size':>5} {'box→mask p50':>13} {'p99':>8} {'full inference p50':>19} {'p99':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['size']:5d} {r['box_p50_ms']:11.1f}ms {r['box_p99_ms']:6.1f}ms {r['full_p50_ms']:17.1f}ms "
              f"{r['full_p99_ms']:6.1f}ms {r['speedup_p50']:6.2f}")
    print(json.dumps({"rows": rows, "torch_threads": torch.get_num_threads(),
                      "load_avg_1m": round(__import__("os").getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
