"""Data pipeline throughput: segpipe's loader next to bare albumentations, per core.

    python bench/data_pipeline.py [--quick]

For each dataset, images/s of
  A. segpipe: ``build_source`` → ``build_transform`` (preset ``default``, 512 px) → ``TaskDataset`` →
     ``build_loader`` (collate included), ``num_workers=0``;
  B. bare: a plain loop doing the same work by hand: cv2 decode, masks decoded the same way (mask PNG
     → 0/1 map; COCO polygons/RLE → pycocotools masks), the same albumentations Compose, and the
     tensors of a batch (images and label maps stacked; instance targets as per-image tensors).
Both run in one process, with cv2 and torch at one thread, after a warm-up pass each, interleaved pass
by pass (A B, then B A, ...) with the same augmentation seed per round. Quoted: wall-clock medians
(images/s) and their ratio, and the median per-round ratio of the two back-to-back passes, in wall time
and in this thread's CPU time; the overhead (target ≤ 10 %) is the CPU one, which time lost to other
processes on a shared machine does not distort. Data: ../shared/data/isbi2012_em (binary) and
../shared/data/coco128 (instance) when present, generated shapes (segpipe.data.synthetic) otherwise.
Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Subset

from segpipe.config import AugmentConfig, DataConfig, SourceConfig
from segpipe.data.augment import build_transform
from segpipe.data.dataset import TaskDataset, build_loader
from segpipe.data.sources import build_source
from segpipe.data.synthetic import make_mask_folders, make_shapes_coco

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
IMAGE_SIZE = 512
BATCH_SIZE = 8
TARGET_OVERHEAD = 0.10


@dataclass
class Case:
    name: str
    task: str
    source: SourceConfig
    data: DataConfig
    bare: Callable[[int], Iterator[object]]  # seed → batches
    n_images: int


# ----------------------------------------------------------------------------------------- bare side


def bare_compose(task: str, seed: int) -> A.Compose:
    """The same A.Compose segpipe uses (same transforms, same bbox params), seeded like the loader."""
    compose = build_transform(AugmentConfig(preset="default"), task, IMAGE_SIZE, train=True).compose
    compose.set_random_seed(seed)
    return compose


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def bare_binary(images: list[Path], masks: list[Path], foreground: int) -> Callable[[int], Iterator[object]]:
    def run(seed: int) -> Iterator[object]:
        compose = bare_compose("binary", seed)
        for start in range(0, len(images), BATCH_SIZE):
            batch_images, batch_maps = [], []
            for image_path, mask_path in zip(images[start : start + BATCH_SIZE], masks[start : start + BATCH_SIZE], strict=False):
                label = (cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED) == foreground).view(np.uint8)
                out = compose(image=read_rgb(image_path), mask=label)
                batch_images.append(out["image"])
                batch_maps.append(out["mask"])
            yield (
                torch.from_numpy(np.stack(batch_images).transpose(0, 3, 1, 2).copy()),
                torch.from_numpy(np.stack(batch_maps).astype(np.int64)),
            )

    return run


def bare_instance(images_dir: Path, annotations: Path, image_ids: list[int]) -> Callable[[int], Iterator[object]]:
    coco = json.loads(annotations.read_text())
    infos = {im["id"]: im for im in coco["images"]}
    cats = sorted(c["id"] for c in coco["categories"])
    label_of = {cid: i + 1 for i, cid in enumerate(cats)}
    anns_of: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd"):
            anns_of.setdefault(ann["image_id"], []).append(ann)

    def decode(ann: dict, h: int, w: int) -> np.ndarray:
        segm = ann["segmentation"]
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        elif isinstance(segm["counts"], list):
            rle = mask_utils.frPyObjects(segm, h, w)
        else:
            rle = segm
        return mask_utils.decode(rle)

    def run(seed: int) -> Iterator[object]:
        compose = bare_compose("instance", seed)
        for start in range(0, len(image_ids), BATCH_SIZE):
            batch_images, batch_targets = [], []
            for image_id in image_ids[start : start + BATCH_SIZE]:
                info = infos[image_id]
                image = read_rgb(images_dir / info["file_name"])
                h, w = image.shape[:2]
                anns = anns_of.get(image_id, [])
                masks = np.empty((len(anns), h, w), np.uint8)
                for k, ann in enumerate(anns):
                    masks[k] = decode(ann, h, w)
                boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
                boxes[:, 2:] += boxes[:, :2]
                np.clip(boxes, 0, [w, h, w, h], out=boxes)
                keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)
                if not keep.all():
                    masks, boxes, labels = masks[keep], boxes[keep], labels[keep]
                data = {"image": image, "bboxes": boxes, "labels": np.arange(len(labels))}
                if len(masks):
                    data["masks"] = masks
                out = compose(**data)
                kept = np.asarray(out["labels"], np.int64)  # masks do not drop with boxes: select them
                h, w = out["image"].shape[:2]
                out_masks = np.asarray(out["masks"])[kept] if len(masks) else np.zeros((0, h, w), np.uint8)
                batch_images.append(torch.from_numpy(out["image"]).permute(2, 0, 1))
                batch_targets.append({
                    "boxes": torch.from_numpy(np.asarray(out["bboxes"], np.float32).reshape(-1, 4)),
                    "labels": torch.from_numpy(labels[kept]),
                    "masks": torch.from_numpy(np.ascontiguousarray(out_masks)),
                })  # fmt: skip
            yield batch_images, batch_targets

    return run


# ---------------------------------------------------------------------------------------- cases


def isbi_case(root: Path, limit: int | None) -> Case:
    images = sorted((root / "train" / "image").glob("*.png"), key=lambda p: int(p.stem))[:limit]
    masks = [root / "train" / "label" / p.name for p in images]
    return mask_case("isbi2012_em", root / "train" / "image", root / "train" / "label", images, masks)


def mask_case(name: str, images_dir: Path, masks_dir: Path, images: list[Path], masks: list[Path]) -> Case:
    source = SourceConfig(images=images_dir, masks=masks_dir)
    data = DataConfig(train=source, foreground_value=255)
    return Case(name, "binary", source, data, bare_binary(images, masks, 255), len(images))


def coco_case(name: str, images_dir: Path, annotations: Path, limit: int | None) -> Case:
    source = SourceConfig(images=images_dir, annotations=annotations)
    data = DataConfig(train=source)
    ids = sorted(im["id"] for im in json.loads(annotations.read_text())["images"])[:limit]
    return Case(name, "instance", source, data, bare_instance(images_dir, annotations, ids), len(ids))


def cases(quick: bool, scratch: Path) -> list[Case]:
    found = []
    isbi, coco = SHARED / "isbi2012_em", SHARED / "coco128"
    if (isbi / "train" / "image").is_dir():
        found.append(isbi_case(isbi, 16 if quick else None))
    else:
        images, masks = make_mask_folders(scratch / "masks", n_images=16, size=(512, 512), binary=True)
        found.append(mask_case("synthetic binary", images, masks, sorted(images.glob("*.png")),
                               sorted(masks.glob("*.png"))))  # fmt: skip
    if (coco / "instances.json").is_file():
        found.append(coco_case("coco128", coco / "images", coco / "instances.json", 32 if quick else None))
    else:
        shapes = make_shapes_coco(scratch / "coco", n_images=32, size=(480, 640), crowd=True)
        found.append(coco_case("synthetic instance", shapes.images, shapes.annotations, None))
    return found


# ------------------------------------------------------------------------------------------ timing


def segpipe_passes(case: Case) -> Callable[[int], Iterator[object]]:
    source = build_source(case.source, case.data, case.task)
    transform = build_transform(AugmentConfig(preset="default"), case.task, IMAGE_SIZE, train=True)
    dataset = TaskDataset(source, transform, case.task)
    # --quick reads the first n images, as the bare side does
    subset = dataset if len(dataset) == case.n_images else Subset(dataset, range(case.n_images))

    def run(seed: int) -> Iterator[object]:
        return iter(build_loader(subset, BATCH_SIZE, shuffle=False, num_workers=0, seed=seed))

    return run


def timed_pass(run: Callable[[int], Iterator[object]], seed: int) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) for one pass over the data."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in run(seed):
        pass
    return time.perf_counter() - wall, time.thread_time() - cpu


def measure(case: Case, rounds: int) -> dict[str, object]:
    sides = {"segpipe": segpipe_passes(case), "bare": case.bare}
    for run in sides.values():  # warm-up: file cache, allocator, lazy imports
        timed_pass(run, 0)
    wall: dict[str, list[float]] = {"segpipe": [], "bare": []}
    cpu: dict[str, list[float]] = {"segpipe": [], "bare": []}
    for r in range(rounds):
        for side in ("segpipe", "bare") if r % 2 == 0 else ("bare", "segpipe"):
            w, c = timed_pass(sides[side], seed=r + 1)
            wall[side].append(w)
            cpu[side].append(c)

    def paired(times: dict[str, list[float]]) -> float:
        # a round's two passes run back to back, so their ratio cancels slow drifts in machine load
        return statistics.median(a / b for a, b in zip(times["segpipe"], times["bare"], strict=False))

    seg, bare = statistics.median(wall["segpipe"]), statistics.median(wall["bare"])
    cpu_ratio = paired(cpu)
    return {
        "dataset": case.name,
        "task": case.task,
        "images": case.n_images,
        "rounds": rounds,
        "segpipe_images_per_s": round(case.n_images / seg, 2),
        "bare_images_per_s": round(case.n_images / bare, 2),
        "wall_ratio_of_medians": round(seg / bare, 4),
        "wall_paired_ratio": round(paired(wall), 4),
        "cpu_paired_ratio": round(cpu_ratio, 4),
        "overhead": round(cpu_ratio - 1, 4),
        "segpipe_pass_s": [round(t, 4) for t in wall["segpipe"]],
        "bare_pass_s": [round(t, 4) for t in wall["bare"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    machine = {
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cv2_threads": cv2.getNumThreads(),
        "num_workers": 0,
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    rounds = 5 if args.quick else 15
    print(f"data pipeline, preset default, {IMAGE_SIZE} px, batch {BATCH_SIZE}, num_workers 0 (per core)")
    print(f"machine: {machine['cores_usable']}/{machine['cpu_count']} cores usable, torch threads "
          f"{machine['torch_threads']}, cv2 threads {machine['cv2_threads']}, {machine['processor']}")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases(args.quick, Path(scratch)):
            results.append(measure(case, rounds))
            r = results[-1]
            print(f"  measured {r['dataset']}: passes segpipe {r['segpipe_pass_s']} s, bare {r['bare_pass_s']} s",
                  file=sys.stderr)  # fmt: skip
    print()
    header = (f"{'dataset':<18} {'task':<9} {'images':>6} {'segpipe img/s':>14} {'bare img/s':>11} "
              f"{'wall ratio':>10} {'wall paired':>11} {'cpu paired':>10} {'overhead':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['dataset']:<18} {r['task']:<9} {r['images']:>6} {r['segpipe_images_per_s']:>14.1f} "
              f"{r['bare_images_per_s']:>11.1f} {r['wall_ratio_of_medians']:>10.3f} {r['wall_paired_ratio']:>11.3f} "
              f"{r['cpu_paired_ratio']:>10.3f} {r['overhead']:>+9.1%}")  # fmt: skip
    worst = max(r["overhead"] for r in results)
    verdict = "within" if worst <= TARGET_OVERHEAD else "ABOVE"
    print(f"\nimg/s: wall-clock medians of {rounds} passes per side, interleaved (A B, B A, ...) after a warm-up.\n"
          "wall ratio = median segpipe time / median bare time. paired = median over rounds of the ratio of\n"
          "the round's two back-to-back passes (wall, and CPU time of this thread: all work runs on it, so\n"
          "time lost to other processes on a shared machine drops out). overhead = cpu paired - 1.\n"
          f"Worst overhead {worst:+.1%}: {verdict} the {TARGET_OVERHEAD:.0%} target.")  # fmt: skip
    print(json.dumps({"bench": "data_pipeline", "image_size": IMAGE_SIZE, "batch_size": BATCH_SIZE, "preset": "default",
                      "machine": machine, "target_overhead": TARGET_OVERHEAD, "worst_overhead": worst,
                      "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
