"""Accuracy on real data: segpipe's shipped configs trained and evaluated through the real path.

    python bench/accuracy.py [--quick] [--threads N] [--work DIR] [--only digits,isbi,coco128]

Each experiment loads a config from ``configs/``, points its data at a prepared copy (overrides), runs
``segpipe.engine.runner.train`` and then ``evaluate_checkpoint`` on the validation split with the
LAST epoch's weights: the best checkpoint is chosen on that same split, so its figure would be
optimistic (it is printed beside, marked "best on val").

- digits (configs/classification/digits_cnn.yaml, cnn_small at 32 px): scikit-learn's ``load_digits``
  written by ``segpipe.data.digits`` (first half train, second half test). Reference: the SVC of
  scikit-learn's documented example (gamma=0.001) on the same split, fitted here (0.969).
- isbi (configs/binary/isbi_unet.yaml as shipped, U-Net ResNet-18 from scratch on random 256 px crops
  at native resolution): ../shared/data/isbi2012_em, slices 0–24 train, 25–29 validation
  (``segpipe.data.holdout``). IoU and Dice of the cell class (label 255 = cell interior) and pixel error,
  at native 512 px resolution (each slice in one mirrored window; no test-time augmentation, which the
  config leaves off). Target (issue 11): IoU ≥ 0.92 and pixel error ≤ 0.065 within 15 minutes of 2 CPU cores (the
  experiment trains on 2 torch threads whatever --threads says). Reference: predicting "cell" everywhere.
- coco128 (configs/instance/coco128_maskrcnn.yaml, light Mask R-CNN from scratch): images 0–95 train,
  96–127 validation (natural file order). Must run end to end; AP stays small from scratch.
- transfer (generated data, no files needed): a U-Net fine-tuned through ``model.weights`` from a model
  trained on other classes vs the same model from scratch (reference): mean held-out IoU over the first
  20 steps, median of seeds 1–3 (what tests/models/test_transfer_helps.py asserts), and the steps each
  needs to reach IoU 0.5 (seed 1).

CPU budget (2 shared cores): ISBI and digits run as configured; Mask R-CNN trains 3 short epochs of 12
steps at 256 px, batch 2, 128 sampled proposals per image (the config: 24 epochs at 384 px).
``--quick``: digits 3 epochs, ISBI 1 epoch of 25 crops, Mask R-CNN 1 epoch of 4 steps (8 validation
images). Data under ../shared is used when present and skipped otherwise (never a test
dependency). Prints a table and ends with one JSON line. Wall time on a shared machine is noisy: CPU
time (this process and its loader workers) and the load average are printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Python puts this script's folder first on sys.path, and bench/ holds other scripts whose names could
# shadow standard modules (a bench/queue.py once hid the `queue` that torch imports). Nothing is
# imported from bench/, so drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from segpipe.config import JobConfig, load  # noqa: E402
from segpipe.data.digits import digits_split, write_digits  # noqa: E402
from segpipe.data.holdout import holdout_coco, holdout_mask_folders  # noqa: E402
from segpipe.data.images import read_mask  # noqa: E402
from segpipe.engine.runner import evaluate_checkpoint, train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ISBI_TARGET = {"iou": 0.92, "pixel_error": 0.065, "minutes": 15}  # issue 11, slices 25–29, 2 CPU cores
CONFIGS = REPO / "configs"
SHARED = REPO.parent / "shared" / "data"


@dataclass
class Outcome:
    name: str
    task: str
    config: str
    model: str
    status: str = "ok"  # or "skipped: <why>"
    split: str = ""
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # last epoch, validation split
    best_on_val: dict[str, float] = field(default_factory=dict)  # best checkpoint (chosen on val)
    reference: dict[str, float] = field(default_factory=dict)
    reference_label: str = ""
    loss_first_last: tuple[float, float] | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ running


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the DataLoader workers of past epochs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train_and_evaluate(out: Outcome, config_name: str, overrides: list[str], keys: tuple[str, ...]) -> None:
    """Train ``configs/<config_name>`` with `overrides`, then evaluate its last checkpoint on val."""
    config: JobConfig = load(CONFIGS / config_name, overrides)
    out.epochs = config.train.epochs
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = train(config, show_progress=False)
    metrics = evaluate_checkpoint(config, result.last_checkpoint, split="val")
    out.wall_s, out.cpu_s = time.perf_counter() - wall, cpu_seconds() - cpu
    out.metrics = {k: float(metrics[k]) for k in keys}
    out.best_on_val = {k: float(result.metrics[k]) for k in keys if k in result.metrics}
    out.best_on_val["epoch"] = result.state.best_epoch
    out.loss_first_last = epoch_losses(result.run_dir / "metrics.jsonl")


def epoch_losses(log: Path) -> tuple[float, float] | None:
    """Mean training loss of the first and of the last epoch, from the run's metrics.jsonl."""
    losses = [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if r.get("split") == "train_epoch"]
    return (float(losses[0]), float(losses[-1])) if losses else None


# -------------------------------------------------------------------------------------- experiments


def digits(work: Path, quick: bool) -> Outcome:
    out = Outcome("digits", "classification", "classification/digits_cnn.yaml", "cnn_small")
    folders = write_digits(work / "digits")
    out.split = f"{folders.counts['train']} / {folders.counts['test']} images"
    overrides = [f"data.train.root={folders.train}", f"data.val.root={folders.test}",
                 f"output_dir={work / 'runs' / 'digits'}"]
    if quick:
        overrides.append("train.epochs=3")
    train_and_evaluate(out, out.config, overrides, ("accuracy", "macro_f1"))
    out.reference, out.reference_label = {"accuracy": svc_accuracy()}, "sklearn SVC example"
    return out


def svc_accuracy() -> float:
    """scikit-learn's documented digits example: SVC(gamma=0.001) on flattened 8×8 images, same split."""
    from sklearn import svm

    split = digits_split()
    (x_train, y_train, _), (x_test, y_test, _) = split["train"], split["test"]
    clf = svm.SVC(gamma=0.001).fit(x_train.reshape(len(x_train), -1), y_train)
    return float((clf.predict(x_test.reshape(len(x_test), -1)) == y_test).mean())


def isbi(work: Path, quick: bool) -> Outcome:
    out = Outcome("isbi", "binary", "binary/isbi_unet.yaml", "unet (resnet18)")
    root = SHARED / "isbi2012_em" / "train"
    if not (root / "image").is_dir():
        out.status = f"skipped: {root} not found"
        return out
    split = holdout_mask_folders(root / "image", root / "label", work / "isbi", "25-29")
    out.split = "slices 0–24 / 25–29"
    overrides = [f"data.train.images={split.train / 'images'}", f"data.train.masks={split.train / 'masks'}",
                 f"data.val.images={split.val / 'images'}", f"data.val.masks={split.val / 'masks'}",
                 "train.threads=2", f"output_dir={work / 'runs' / 'isbi'}"]  # fmt: skip
    if quick:
        overrides += ["train.epochs=1", "train.epoch_repeats=1"]
        out.notes.append("1 epoch of 25 crops (the config's recipe is the full run)")
    train_and_evaluate(out, out.config, overrides, ("iou", "dice", "pixel_error"))
    out.reference, out.reference_label = all_cell_baseline(split.val / "masks"), "'cell' everywhere"
    met = (out.metrics["iou"] >= ISBI_TARGET["iou"] and out.metrics["pixel_error"] <= ISBI_TARGET["pixel_error"]
           and out.wall_s <= 60 * ISBI_TARGET["minutes"])
    out.notes.append(f"target IoU ≥ {ISBI_TARGET['iou']}, pixel error ≤ {ISBI_TARGET['pixel_error']} in "
                     f"{ISBI_TARGET['minutes']} min: {'met' if met else 'NOT met'} ({out.wall_s / 60:.1f} min)")
    return out


def all_cell_baseline(masks: Path) -> dict[str, float]:
    """IoU/Dice/pixel error of predicting cell interior (255) on every pixel, at native resolution."""
    cell = total = 0
    for path in sorted(masks.glob("*.png")):
        label = read_mask(path)
        cell += int((label == 255).sum())
        total += label.size
    share = cell / total
    return {"iou": share, "dice": 2 * share / (1 + share), "pixel_error": 1 - share}


def coco128(work: Path, quick: bool) -> Outcome:
    out = Outcome("coco128", "instance", "instance/coco128_maskrcnn.yaml", "maskrcnn_resnet18_fpn")
    root = SHARED / "coco128"
    if not (root / "instances.json").is_file():
        out.status = f"skipped: {root / 'instances.json'} not found"
        return out
    block = "120-127" if quick else "96-127"
    split = holdout_coco(root / "images", root / "instances.json", work / "coco128", block)
    out.split = f"{len(split.train_names)} / {len(split.val_names)} images"
    # One Mask R-CNN step (2 images) costs seconds of CPU, most of it in the mask head and the FPN's
    # stride-4 convolutions, so the epochs are cut short: each sees `steps` × 2 shuffled images.
    size, epochs, steps = 256, (1 if quick else 3), (4 if quick else 12)
    overrides = [f"data.train.annotations={split.train}", f"data.val.annotations={split.val}",
                 f"data.train.images={root / 'images'}", f"data.val.images={root / 'images'}",
                 f"train.image_size={size}", f"model.min_size={size}", f"model.max_size={size}",
                 "train.batch_size=2", "model.box_batch_size_per_image=128", f"train.epochs={epochs}",
                 f"train.max_steps_per_epoch={steps}", f"train.warmup_steps={steps}",  # the config's 50 > all steps
                 f"output_dir={work / 'runs' / 'coco128'}"]  # fmt: skip
    out.notes.append(f"{epochs} epoch(s) of {steps} steps × 2 images at {size} px, 128 proposals/image, "
                     f"warm-up {steps} steps (the config: 24 full epochs at 384 px, batch 4)")
    train_and_evaluate(out, out.config, overrides, ("segm_AP", "segm_AP50", "bbox_AP", "bbox_AP50"))
    return out


def transfer(work: Path, quick: bool) -> Outcome:
    """Fine-tuned from a model trained on other classes vs from scratch (generated data, fixed seeds): the
    early-IoU head start that tests/models/test_transfer_helps.py asserts, and steps to a target IoU."""
    sys.path.insert(0, str(REPO))
    from tests.models import test_transfer_helps as shapes

    out = Outcome("transfer", "binary", "(generated shapes)", "unet resnet18, depth 3")
    out.split = "4×8 train / 8 held out"
    work.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), cpu_seconds()
    weights = shapes.pretrain(work / "shapes_unet.pt")
    early = {w: statistics.median(shapes.early_iou(weights if w else None, seed) for seed in shapes.SEEDS)
             for w in (True, False)}
    tuned, scratch = shapes.steps_to_target(weights), shapes.steps_to_target(None)
    out.wall_s, out.cpu_s = time.perf_counter() - wall, cpu_seconds() - cpu
    cap = float(shapes.MAX_STEPS + 5)  # "not reached within MAX_STEPS" shows as MAX_STEPS + 5
    out.metrics = {"early_iou": early[True], "steps_tuned": float(tuned or cap)}
    out.reference = {"early_iou": early[False], "steps_tuned": float(scratch or cap)}
    out.reference_label = "the same model from scratch"
    out.notes.append(f"early_iou: mean held-out IoU over the first {shapes.EARLY_STEPS} steps, median of seeds "
                     f"{list(shapes.SEEDS)}; steps to IoU {shapes.TARGET_IOU} (checked every 5, seed 1); source: "
                     f"semantic circles/squares, target: binary any shape incl. unseen triangles")
    out.best_on_val = {"epoch": 0}
    return out


EXPERIMENTS: dict[str, Callable[[Path, bool], Outcome]] = {"digits": digits, "isbi": isbi, "coco128": coco128,
                                                           "transfer": transfer}


# -------------------------------------------------------------------------------------------- output


def machine_info() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_table(outcomes: list[Outcome]) -> None:
    header = (f"{'experiment':<10} {'task':<14} {'train / val':<22} {'metric':<12} {'last epoch':>10} "
              f"{'best on val':>11} {'reference':>10}  {'wall s':>7} {'cpu s':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for o in outcomes:
        if o.status != "ok":
            print(f"{o.name:<10} {o.task:<14} {o.status}")
            continue
        for i, (key, value) in enumerate(o.metrics.items()):
            ref = o.reference.get(key)
            best = o.best_on_val.get(key)
            lead = f"{o.name:<10} {o.task:<14} {o.split:<22}" if i == 0 else " " * 48
            times = f"  {o.wall_s:>7.0f} {o.cpu_s:>7.0f}" if i == 0 else ""
            print(f"{lead} {key:<12} {value:>10.4f} {'' if best is None else f'{best:.4f}':>11} "
                  f"{'' if ref is None else f'{ref:.4f}':>10}{times}")  # fmt: skip
        extra = [f"model {o.model}", f"config {o.config}", *o.notes]
        if o.reference_label:
            extra.append(f"reference = {o.reference_label}")
        if o.loss_first_last:
            extra.append(f"train loss {o.loss_first_last[0]:.3f} → {o.loss_first_last[1]:.3f}")
        extra.append(f"best epoch {o.best_on_val.get('epoch')} of {o.epochs}")
        print(" " * 48 + " " + "; ".join(extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs/steps each: checks the path, not accuracy")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine more threads than free cores slow "
                             "training several-fold; 0 = torch's default)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="keep data and runs (plots, checkpoints) here")
    parser.add_argument("--only", default=",".join(EXPERIMENTS),
                        help=f"comma-separated subset of {', '.join(EXPERIMENTS)}")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    mode = "quick" if args.quick else "full"
    print(f"accuracy ({mode}): {machine['cores_usable']}/{machine['cpu_count']} cores usable, torch threads "
          f"{machine['torch_threads']}, device {machine['device']}, "
          f"load average {machine['load_average_start']}")  # fmt: skip
    start = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="segpipe-accuracy-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            print(f"  running {name} ...", file=sys.stderr, flush=True)
            outcome = EXPERIMENTS[name](work / mode, args.quick)
            outcomes.append(outcome)
            done = outcome.status if outcome.status != "ok" else f"{outcome.metrics} in {outcome.wall_s:.0f} s"
            print(f"  {name}: {done}", file=sys.stderr, flush=True)
    total = time.perf_counter() - start
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print_table(outcomes)
    print(f"\nmetrics: validation split, last epoch's weights; 'best on val' = the checkpoint the run kept, chosen "
          f"on that same split (optimistic).\ntotal wall {total:.0f} s; load average at the end "
          f"{machine['load_average_end']}")  # fmt: skip
    print(json.dumps({
        "bench": "accuracy", "mode": mode, "machine": machine, "total_wall_s": round(total, 1),
        "experiments": [
            {"name": o.name, "task": o.task, "config": o.config, "model": o.model, "status": o.status,
             "split": o.split, "epochs": o.epochs, "metrics": {k: round(v, 5) for k, v in o.metrics.items()},
             "best_on_val": o.best_on_val, "reference": {k: round(v, 5) for k, v in o.reference.items()},
             "reference_label": o.reference_label, "loss_first_last": o.loss_first_last,
             "wall_s": round(o.wall_s, 1), "cpu_s": round(o.cpu_s, 1), "notes": o.notes}
            for o in outcomes
        ],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
