"""What to label next: uncertainty ranking against random choice, in rounds of "label k more, retrain,
evaluate on a fixed held-out set".

    python bench/label_next.py [--quick] [--seeds 3] [--only digits,isbi,isbi-membrane] [--plot PATH]

Both strategies start each seed from the same random labelled set; every round retrains the model from
scratch on what is labelled so far (the same steps and seed for both), evaluates it on the held-out set,
predicts the unlabelled pool through the task's own adapter (so the uncertainty is exactly what predict
jobs store) and adds k images: the k most uncertain by ``segpipe.ranking.select.rank`` (near-duplicates
kept apart by their dHash), or k at random.

- digits (classification, ``cnn_small`` at 32 px): scikit-learn's ``load_digits``, first half the pool,
  second half held out (the split of ``segpipe.data.digits``). Score: accuracy.
- isbi (binary segmentation, a small U-Net at 128 px): ../shared/data/isbi2012_em, slices 0–24 cut into
  128 px patches as the pool, slices 25–29 held out (also as patches). Score: IoU of the cell class.
  Skipped when ../shared/data is absent. This score saturates by about 8 patches: no curve to save on.
- isbi-membrane: the same patches and model, scored by the IoU of the membrane (label 0, the thin hard
  class, about 22 % of pixels), from 2 labelled patches, +2 a round, 100 steps; ``--patch 64`` cuts
  smaller patches (64 per slice). Not in the default ``--only``.

The figure of merit: the labels each strategy needs for its mean curve (over seeds) to reach random's
final mean score, read off the curves with linear interpolation; "saving" is 1 − uncertainty's labels /
random's. Prints a table, writes the curves as a picture, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/ scripts are not modules

from segpipe.config import ModelConfig  # noqa: E402
from segpipe.models.registry import build_model  # noqa: E402
from segpipe.models.tasks import get_adapter  # noqa: E402
from segpipe.ranking.fingerprints import dhash  # noqa: E402
from segpipe.ranking.select import Candidate, rank  # noqa: E402

SHARED = BENCH.parent.parent / "shared" / "data"


@dataclass
class Experiment:
    """A pool of images with targets, a held-out set, and how to train and score a model on them."""

    name: str
    task: str
    num_labels: int
    model: dict[str, Any]
    pool_images: np.ndarray  # N×3×H×W uint8
    pool_targets: np.ndarray  # N class ids, or N×H×W label maps
    test_images: np.ndarray
    test_targets: np.ndarray
    start: int  # labelled images at round 0
    step: int  # images added per round
    rounds: int
    train_steps: int
    batch_size: int
    lr: float
    score: Callable[[list[Any], np.ndarray], float]
    metric: str


def digits_experiment(quick: bool) -> Experiment:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.rint(digits.images * 255 / 16).astype(np.uint8)  # 8×8, 0..16 → 0..255
    big = torch.nn.functional.interpolate(torch.from_numpy(grey)[:, None].float(), size=32, mode="bilinear",
                                          align_corners=False).round().clamp(0, 255).to(torch.uint8)
    images = big.repeat(1, 3, 1, 1).numpy()
    half = len(images) // 2
    return Experiment(
        name="digits", task="classification", num_labels=10, model={"name": "cnn_small"},
        pool_images=images[:half], pool_targets=digits.target[:half],
        test_images=images[half:], test_targets=digits.target[half:],
        start=20, step=20, rounds=3 if quick else 8, train_steps=60 if quick else 150, batch_size=32, lr=3e-3,
        score=lambda preds, targets: float(np.mean([p.class_id == t for p, t in zip(preds, targets, strict=True)])),
        metric="accuracy",
    )


def isbi_experiment(quick: bool, patch: int = 128, scored: str = "cell") -> Experiment | None:
    """ISBI patches; ``scored`` names the class whose IoU is the score ("cell" = label 1, "membrane" = 0)."""
    root = SHARED / "isbi2012_em" / "train"
    if not root.is_dir():
        return None
    from PIL import Image

    def patches(indices: range) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for i in indices:
            image = np.asarray(Image.open(root / "image" / f"{i}.png").convert("L"))
            label = (np.asarray(Image.open(root / "label" / f"{i}.png").convert("L")) > 127).astype(np.uint8)
            for y in range(0, 512, patch):
                for x in range(0, 512, patch):
                    images.append(np.repeat(image[None, y:y + patch, x:x + patch], 3, axis=0))
                    labels.append(label[y:y + patch, x:x + patch])
        return np.stack(images), np.stack(labels)

    pool_images, pool_targets = patches(range(25))
    test_images, test_targets = patches(range(25, 30))

    positive = 1 if scored == "cell" else 0

    def iou(preds: list[Any], targets: np.ndarray) -> float:
        pred = np.stack([p.label_map for p in preds]) == positive
        truth = targets == positive
        return float((pred & truth).sum() / max((pred | truth).sum(), 1))

    membrane = scored == "membrane"  # from 2 patches, +2 a round: the membrane score keeps rising past 8
    return Experiment(
        name="isbi-membrane" if membrane else "isbi", task="binary", num_labels=2,
        model={"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        pool_images=pool_images, pool_targets=pool_targets, test_images=test_images, test_targets=test_targets,
        start=2 if membrane else 4, step=2 if membrane else 4, rounds=2 if quick else (4 if membrane else 5),
        train_steps=40 if quick else (100 if membrane else 80), batch_size=4, lr=3e-3,
        score=iou, metric=f"{scored} IoU",
    )


def _batch(exp: Experiment, images: np.ndarray, targets: np.ndarray | None, ids: Sequence[int]) -> dict[str, Any]:
    key = "class_ids" if exp.task == "classification" else "label_maps"
    batch: dict[str, Any] = {"images": torch.from_numpy(images), "image_ids": list(ids), "meta": [{} for _ in ids]}
    if targets is not None:
        batch[key] = torch.from_numpy(np.asarray(targets)).long()
    return batch


def train(exp: Experiment, labelled: Sequence[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    adapter = get_adapter(exp.task, num_labels=exp.num_labels)
    model = build_model(ModelConfig(**exp.model), exp.task, exp.num_labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=exp.lr)
    rng = np.random.default_rng(seed)
    chosen = np.asarray(labelled)
    for _ in range(exp.train_steps):
        idx = rng.choice(chosen, size=min(exp.batch_size, len(chosen)), replace=False)
        images = exp.pool_images[idx]
        targets = exp.pool_targets[idx]
        if exp.task != "classification" and rng.random() < 0.5:  # flips: cheap, label-preserving
            images, targets = images[..., ::-1].copy(), targets[..., ::-1].copy()
        losses = adapter.loss(model, adapter.prepare(_batch(exp, images, targets, idx.tolist()), "cpu"))
        optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
    return model


def predict(exp: Experiment, model: torch.nn.Module, images: np.ndarray) -> list[Any]:
    adapter = get_adapter(exp.task, num_labels=exp.num_labels)
    preds = []
    for start in range(0, len(images), 64):
        chunk = images[start:start + 64]
        batch = _batch(exp, chunk, None, range(start, start + len(chunk)))
        preds.extend(adapter.predict(model, adapter.prepare(batch, "cpu")))
    return preds


def run_strategy(exp: Experiment, strategy: str, seed: int, fingerprints: list[int]) -> list[tuple[int, float]]:
    """(labels, held-out score) after each round."""
    rng = np.random.default_rng(1000 + seed)
    labelled = list(rng.choice(len(exp.pool_images), size=exp.start, replace=False))
    curve = []
    for round_ in range(exp.rounds + 1):
        model = train(exp, labelled, seed)
        curve.append((len(labelled), exp.score(predict(exp, model, exp.test_images), exp.test_targets)))
        if round_ == exp.rounds:
            break
        rest = [i for i in range(len(exp.pool_images)) if i not in set(labelled)]
        if strategy == "random":
            labelled += list(rng.choice(rest, size=exp.step, replace=False))
        else:
            preds = predict(exp, model, exp.pool_images[rest])
            candidates = [Candidate(f"{i:06d}", float(p.uncertainty), fingerprints[i])
                          for i, p in zip(rest, preds, strict=True)]
            labelled += [int(c.key) for c in rank(candidates, exp.step).chosen]
    return curve


def labels_to_reach(curve: Sequence[tuple[int, float]], target: float) -> float | None:
    """Labels at which a (labels, score) curve first reaches ``target``, interpolated; None if never."""
    for (n0, s0), (n1, s1) in itertools.pairwise(curve):
        if s0 >= target:
            return float(n0)
        if s1 >= target:
            return n0 + (n1 - n0) * (target - s0) / (s1 - s0)
    return float(curve[0][0]) if curve and curve[0][1] >= target else None


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    return [(n, float(np.mean([c[i][1] for c in curves]))) for i, (n, _) in enumerate(curves[0])]


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        for strategy, colour in (("random", "tab:grey"), ("uncertainty", "tab:blue")):
            for curve in res["curves"][strategy]:
                ax.plot(*zip(*curve, strict=True), color=colour, alpha=0.25, linewidth=1)
            ax.plot(*zip(*res["mean"][strategy], strict=True), color=colour, linewidth=2.5, marker="o", label=strategy)
        ax.axhline(res["target"], color="tab:red", linestyle="--", linewidth=1, label="random's final score")
        ax.set(title=f"{name}: saving {res['saving']:.0%}" if res["saving"] is not None else name,
               xlabel="labelled images", ylabel=res["metric"])
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="digits,isbi")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=Path("bench_out/label_next.png"))
    parser.add_argument("--patch", type=int, default=None,
                        help="isbi, isbi-membrane: patch size (512 / patch squared per slice; default 128)")
    for name in ("start", "step", "rounds", "train_steps", "batch_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"override the experiment's {name}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    builders: dict[str, Callable[[bool], Experiment | None]] = {
        "digits": digits_experiment, "isbi": lambda quick: isbi_experiment(quick, args.patch or 128),
        "isbi-membrane": lambda quick: isbi_experiment(quick, args.patch or 128, "membrane")}
    results: dict[str, dict[str, Any]] = {}
    for name in args.only.split(","):
        exp = builders[name](args.quick)
        if exp is None:
            print(f"{name}: skipped (no {SHARED})")
            continue
        for field_name in ("start", "step", "rounds", "train_steps", "batch_size"):
            if getattr(args, field_name) is not None:
                setattr(exp, field_name, getattr(args, field_name))
        started = time.perf_counter()
        fingerprints = [dhash(im.transpose(1, 2, 0)) for im in exp.pool_images]
        curves: dict[str, list[list[tuple[int, float]]]] = {"random": [], "uncertainty": []}
        for seed in range(1, args.seeds + 1):
            for strategy in curves:
                curves[strategy].append(run_strategy(exp, strategy, seed, fingerprints))
                print(f"{name} seed {seed} {strategy}: " + ", ".join(f"{n}:{s:.3f}" for n, s in curves[strategy][-1]),
                      flush=True)
        mean = {s: mean_curve(c) for s, c in curves.items()}
        target = mean["random"][-1][1]
        random_labels = float(mean["random"][-1][0])
        reach = labels_to_reach(mean["uncertainty"], target)
        results[name] = {
            "metric": exp.metric, "curves": curves, "mean": mean,
            "target": target, "labels_random": random_labels, "labels_uncertainty": reach,
            "saving": None if reach is None else 1 - reach / random_labels,
            "seconds": round(time.perf_counter() - started, 1),
        }
    print()
    print(f"{'set':14} {'metric':13} {'random final':>12} {'labels: random':>15} {'labels: uncertainty':>20} {'saving':>7}")
    for name, res in results.items():
        reached = "not reached" if res["labels_uncertainty"] is None else f"{res['labels_uncertainty']:.1f}"
        saving = "-" if res["saving"] is None else f"{res['saving']:.0%}"
        print(f"{name:14} {res['metric']:13} {res['target']:12.4f} {res['labels_random']:15.0f} {reached:>20} {saving:>7}")
    if results:
        plot(results, args.plot)
        print(f"curves: {args.plot}")
    print(json.dumps({name: {k: v for k, v in res.items() if k not in ("curves", "mean")}
                      for name, res in results.items()} | {"seeds": args.seeds, "quick": args.quick,
                                                          "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
