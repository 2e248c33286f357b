"""Training-loop overhead: segpipe's `fit` next to a bare PyTorch loop, same model, batches, optimizer.

    python bench/engine_overhead.py [--quick]

For a U-Net (resnet18 encoder, semantic, 3 classes) and the light Mask R-CNN (resnet18-FPN), both sides
start from the same weights and optimizer state and step through the same pre-collated batches (uint8,
as segpipe's loader gives them), in one process, interleaved:

  A. segpipe: ``engine.train.fit`` with the task adapter (normalisation, loss dict), the metrics-log and
     progress-callback hooks a queued job uses (checkpoints excluded: they are per-epoch I/O);
  B. bare: a plain loop — normalise, forward, the same loss, backward, step, zero_grad.

Quoted: steps/s medians and the median per-round ratio A/B (target ≥ 0.97). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, interleave, machine, print_table

from segpipe.config import DataConfig, ModelConfig, SourceConfig, TrainConfig
from segpipe.data.dataset import TaskDataset, collate
from segpipe.data.sources import build_source
from segpipe.data.synthetic import make_shapes_coco
from segpipe.engine.hooks import MetricsLogHook, ProgressCallbackHook
from segpipe.engine.train import TrainContext, build_optimizer, fit
from segpipe.models import build_model, get_adapter, losses
from segpipe.models.adapter import IMAGENET_MEAN, IMAGENET_STD

TARGET = 0.97


def shape_batches(task: str, size: int, batch: int, steps: int) -> list[dict[str, Any]]:
    """Collated batches of generated shapes, exactly as segpipe's loader yields them (uint8)."""
    folder = Path(tempfile.mkdtemp(prefix="segpipe-bench-data-"))
    coco = make_shapes_coco(folder, n_images=batch * steps, size=(size, size), empty_images=0, crowd=False)
    source_cfg = SourceConfig(images=coco.images, annotations=coco.annotations)
    dataset = TaskDataset(build_source(source_cfg, DataConfig(train=source_cfg), task), None, task)
    to_batch = collate(task)
    return [to_batch([dataset[i] for i in range(s * batch, (s + 1) * batch)]) for s in range(steps)]


def semantic_case(size: int, batch: int, steps: int) -> dict[str, Any]:
    batches = shape_batches("semantic", size, batch, steps)
    model = build_model(ModelConfig(name="unet", encoder="resnet18"), "semantic", 4)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def bare_loss(m: torch.nn.Module, b: dict[str, Any]) -> torch.Tensor:
        x = (b["images"].float() - mean) / std
        logits = m(x)
        y = b["label_maps"]
        return losses.masked_cross_entropy(logits, y, 255) + losses.multiclass_dice(logits, y, 255)

    return {"name": f"unet-resnet18 semantic {size}px b{batch}", "task": "semantic", "labels": 4,
            "model": model, "batches": batches, "bare_loss": bare_loss}


def instance_case(size: int, batch: int, steps: int) -> dict[str, Any]:
    batches = shape_batches("instance", size, batch, steps)
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", min_size=size, max_size=size), "instance", 4)

    def bare_loss(m: torch.nn.Module, b: dict[str, Any]) -> torch.Tensor:
        images = [im.float() / 255 for im in b["images"]]
        targets = [{"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"]} for t in b["targets"]]
        return sum(m(images, targets).values())

    return {"name": f"maskrcnn-resnet18-fpn {size}px b{batch}", "task": "instance", "labels": 4,
            "model": model, "batches": batches, "bare_loss": bare_loss}


def run_case(case: dict[str, Any], rounds: int) -> dict[str, Any]:
    cfg = TrainConfig(epochs=1, batch_size=len(case["batches"][0]["image_ids"]), lr=1e-4, optimizer="adamw",
                      scheduler="none", grad_clip=None)
    seg_model, bare_model = case["model"], copy.deepcopy(case["model"])
    seg_opt, bare_opt = build_optimizer(seg_model, cfg), build_optimizer(bare_model, cfg)
    adapter = get_adapter(case["task"], num_labels=case["labels"])
    batches = case["batches"]
    log_dir = Path(tempfile.mkdtemp(prefix="segpipe-bench-"))
    ctx = TrainContext(model=seg_model, adapter=adapter, optimizer=seg_opt, scheduler=None, cfg=cfg,
                       device=torch.device("cpu"), monitor="loss", batches_per_epoch=len(batches))
    hooks = [MetricsLogHook(log_dir / "metrics.jsonl"), ProgressCallbackHook(lambda p: None)]

    def segpipe_pass() -> int:
        ctx.cfg = cfg.model_copy(update={"epochs": ctx.state.epoch + 1})  # one pass = one more epoch
        fit(ctx, batches, hooks)
        return len(batches)

    def bare_pass() -> int:
        bare_model.train()
        for b in batches:
            loss = case["bare_loss"](bare_model, b)
            loss.backward()
            bare_opt.step()
            bare_opt.zero_grad(set_to_none=True)
        return len(batches)

    result = interleave(segpipe_pass, bare_pass, rounds)
    return {"case": case["name"], "segpipe_steps_s": result["a_per_s"], "bare_steps_s": result["b_per_s"],
            "ratio": result["ratio"], "ratio_min": result["ratio_min"], "ratio_max": result["ratio_max"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds")
    args = parser.parse_args()
    rounds, steps = (3, 3) if args.quick else (7, 6)
    cases = [semantic_case(128, 4, steps), instance_case(128, 2, max(steps // 2, 2))]
    results = [run_case(c, rounds) for c in cases]
    info = machine()
    print_table(
        f"training loop: segpipe fit vs bare PyTorch ({info['cpu_cores']} cores, {info['torch_threads']} torch threads, "
        f"{info['device']}, load {info['load_avg_1m']})",
        ["case", "segpipe steps/s", "bare steps/s", "ratio (median)", "min..max", f"≥ {TARGET}"],
        [[r["case"], f"{r['segpipe_steps_s']:.3f}", f"{r['bare_steps_s']:.3f}", f"{r['ratio']:.3f}",
          f"{r['ratio_min']:.3f}..{r['ratio_max']:.3f}", "yes" if r["ratio"] >= TARGET else "no"] for r in results],
    )
    emit({"bench": "engine_overhead", "machine": info, "target": TARGET, "results": results})


if __name__ == "__main__":
    main()
