"""Prediction overhead: segpipe's predict path including encoding next to a bare batched forward.

    python bench/predict_overhead.py [--quick]

Same model, same decoded images (in memory, so disk speed does not enter), in one process, interleaved:

  A. segpipe: ``engine.predict.predict_arrays`` (letterbox, normalise, forward, logits back to the
     original size, arg-max — or the detector's own resize) and then every prediction encoded as COCO
     results (compressed RLE masks, original category ids) by ``masks.encode``;
  B. bare: resize + stack + normalise + forward + arg-max (U-Net), or the detector's forward on the
     image list with its score filter (Mask R-CNN), with no mapping back and no encoding.

Quoted: images/s medians and the median per-round ratio A/B (target ≥ 0.90). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, interleave, machine, print_table

from segpipe import config as config_mod
from segpipe.config import PredictConfig
from segpipe.data.categories import CategoryMap
from segpipe.data.images import read_image
from segpipe.data.synthetic import SHAPE_CATEGORIES, make_shapes_coco
from segpipe.engine.predict import LoadedModel, predict_arrays
from segpipe.masks.encode import prediction_to_coco_results
from segpipe.models import build_model, get_adapter
from segpipe.models.adapter import IMAGENET_MEAN, IMAGENET_STD

TARGET = 0.90
CMAP = CategoryMap(tuple(c for c, _ in SHAPE_CATEGORIES), tuple(n for _, n in SHAPE_CATEGORIES), offset=1)


def loaded(task: str, model_cfg: dict[str, Any], size: int) -> LoadedModel:
    config = config_mod.from_dict({"task": task, "model": model_cfg, "train": {"image_size": size}})
    model = build_model(config.model, task, CMAP.num_labels).eval()
    adapter = get_adapter(task, num_labels=CMAP.num_labels)
    return LoadedModel(model, adapter, config, CMAP, torch.device("cpu"), Path("(in memory)"))


def bare_unet(model: torch.nn.Module, images: list[np.ndarray], size: int) -> int:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack([cv2.resize(im, (size, size)) for im in images])).permute(0, 3, 1, 2)
    with torch.no_grad():
        model((x.float() - mean) / std).argmax(dim=1)
    return len(images)


def bare_rcnn(model: torch.nn.Module, images: list[np.ndarray], threshold: float) -> int:
    with torch.no_grad():
        outs = model([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
    for out in outs:
        _ = out["masks"][out["scores"] >= threshold] > 0.5
    return len(images)


def run_case(name: str, lm: LoadedModel, images: list[np.ndarray], bare: Any, batch: int, rounds: int) -> dict[str, Any]:
    cfg = PredictConfig(score_threshold=0.0, batch_size=batch)
    batches = [images[i : i + batch] for i in range(0, len(images), batch)]

    def segpipe_pass() -> int:
        for chunk in batches:
            for pred in predict_arrays(lm, chunk, list(range(len(chunk))), cfg):
                prediction_to_coco_results(pred, CMAP)
        return len(images)

    def bare_pass() -> int:
        return sum(bare(chunk) for chunk in batches)

    r = interleave(segpipe_pass, bare_pass, rounds)
    return {"case": name, "segpipe_images_s": r["a_per_s"], "bare_images_s": r["b_per_s"], "ratio": r["ratio"],
            "ratio_min": r["ratio_min"], "ratio_max": r["ratio_max"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, n = (3, 8) if args.quick else (7, 16)
    folder = Path(tempfile.mkdtemp(prefix="segpipe-bench-predict-"))
    coco = make_shapes_coco(folder, n_images=n, size=(240, 320), empty_images=0, crowd=False)
    images = [read_image(p) for p in sorted(coco.images.iterdir())]

    unet = loaded("semantic", {"name": "unet", "encoder": "resnet18"}, 256)
    rcnn = loaded("instance", {"name": "maskrcnn_resnet18_fpn", "min_size": 256, "max_size": 320,
                               "box_score_thresh": 0.0, "box_detections_per_img": 20}, 256)
    results = [
        run_case("unet-resnet18 semantic 320×240 → 256", unet, images, lambda ims: bare_unet(unet.model, ims, 256), 4, rounds),
        run_case("maskrcnn-resnet18-fpn 320×240", rcnn, images, lambda ims: bare_rcnn(rcnn.model, ims, 0.0), 2, rounds),
    ]
    info = machine()
    print_table(
        f"prediction: segpipe (incl. mapping back + COCO RLE encoding) vs bare forward ({info['cpu_cores']} cores, "
        f"{info['torch_threads']} torch threads, {info['device']}, load {info['load_avg_1m']})",
        ["case", "segpipe img/s", "bare img/s", "ratio (median)", "min..max", f"≥ {TARGET}"],
        [[r["case"], f"{r['segpipe_images_s']:.2f}", f"{r['bare_images_s']:.2f}", f"{r['ratio']:.3f}",
          f"{r['ratio_min']:.3f}..{r['ratio_max']:.3f}", "yes" if r["ratio"] >= TARGET else "no"] for r in results],
    )
    emit({"bench": "predict_overhead", "machine": info, "target": TARGET, "results": results})


if __name__ == "__main__":
    main()
