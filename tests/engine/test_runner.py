"""`runner.train` end to end with real configs: each task kind learns a tiny dataset (asserted on its
metric), the run directory holds what it promises, an interrupted run resumes to exactly the weights
of an uninterrupted one, and a dataset with errors is refused or, with ``skip_invalid``, skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from segpipe.config import JobConfig
from segpipe.data.images import read_image
from segpipe.data.synthetic import make_class_folders, make_shapes_coco
from segpipe.engine.checkpoint import BEST, LAST, load_checkpoint
from segpipe.engine.hooks import Hook
from segpipe.engine.runner import evaluate_checkpoint, train
from segpipe.engine.train import TrainContext
from segpipe.errors import DataError
from tests.engine.runs import RCNN_SMALL, Run, coco_source, job_config, same_split

RUN_FILES = ("config.yaml", "categories.json", "validation.json", "metrics.jsonl", LAST, BEST, "metrics.json")


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def check_run_dir(run: Run, monitor: str, plots: tuple[str, ...]) -> None:
    for name in RUN_FILES:
        assert (run.dir / name).is_file(), name
    for name in plots:
        assert (run.dir / "plots" / name).stat().st_size > 1000, name
    assert json.loads((run.dir / "metrics.json").read_text()) == json.loads(json.dumps(run.result.metrics))
    # best.pt holds the weights of the best validation epoch, and the final metrics are theirs
    log = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    best = [r for r in log if r["split"] == "val" and r["epoch"] == run.result.state.best_epoch]
    assert best and best[0][monitor] == run.result.metrics[monitor] == run.result.state.best
    assert run.result.state.best == max(r[monitor] for r in log if r["split"] == "val")
    # the final metrics are those of best.pt: evaluating the checkpoint again gives the same numbers
    again = evaluate_checkpoint(run.config, run.dir, device="cpu")
    assert scalars(again) == pytest.approx(scalars(run.result.metrics), abs=1e-9)


# ------------------------------------------------------------------------------------- learning


def test_classification_learns_the_shapes(classification_run: Run) -> None:
    metrics = classification_run.result.metrics
    assert metrics["accuracy"] >= 0.9, metrics
    check_run_dir(classification_run, "accuracy", ("curves.png", "confusion.png", "val_overlays.png"))
    log = [json.loads(line) for line in (classification_run.dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in log if r["split"] == "val"]
    assert [r["epoch"] for r in val] == list(range(1, 16))
    assert val[0]["accuracy"] < 0.9 <= metrics["accuracy"]  # it learned here, it did not start there


def test_semantic_learns_the_shapes(semantic_run: Run) -> None:
    metrics = semantic_run.result.metrics
    assert metrics["miou"] >= 0.75, scalars(metrics)
    check_run_dir(semantic_run, "miou", ("curves.png", "confusion.png", "val_overlays.png"))
    # the overlays show the 48×64 images, not the 64×64 letterboxed inputs with their padding (where
    # the model's answers are noise): landscape cells 256 px wide, 4 per row, with captions
    sheet = read_image(semantic_run.dir / "plots" / "val_overlays.png")
    assert sheet.shape[1] == 4 * 256 and sheet.shape[0] <= 3 * (256 * 48 // 64 + 30)  # 6 images: truth + prediction


def test_binary_from_coco_learns_the_shapes(binary_run: Run) -> None:
    metrics = binary_run.result.metrics
    assert metrics["iou"] >= 0.75, scalars(metrics)
    check_run_dir(binary_run, "iou", ("curves.png", "val_overlays.png"))
    assert json.loads((binary_run.dir / "categories.json").read_text())["ids"] == [3]  # exported as the first id


@pytest.mark.slow
def test_instance_learns_the_shapes(instance_run: Run) -> None:
    metrics = instance_run.result.metrics
    assert metrics["segm_AP"] >= 0.3 and metrics["bbox_AP50"] >= 0.6, scalars(metrics)
    check_run_dir(instance_run, "segm_AP", ("curves.png", "val_overlays.png"))


@pytest.mark.slow
def test_detection_learns_the_shapes(tmp_path: Path) -> None:
    """Faster R-CNN MobileNetV3 from scratch. Its FPN levels both have stride 32 and its RPN drops
    proposals scoring < 0.05, so below min_size ~320 the shapes fall between anchors and an
    undertrained RPN proposes nothing at all (AP 0 after 30 epochs at 128 and 256 px)."""
    coco = make_shapes_coco(tmp_path / "data", n_images=8, size=(64, 64), seed=0)
    model = {"name": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 320, "max_size": 320, **RCNN_SMALL}
    config = job_config(
        "detection", same_split(coco_source(coco)), model, tmp_path / "run",
        epochs=25, batch_size=2, lr=2e-3, image_size=64, warmup_steps=20, grad_clip=10.0, weight_decay=0.0,
    )  # fmt: skip
    result = train(config, show_progress=False)
    assert result.metrics["bbox_AP"] >= 0.1 and result.metrics["bbox_AP50"] >= 0.3, scalars(result.metrics)
    assert "segm_AP" not in result.metrics


# --------------------------------------------------------------------------------------- resume


class StopAfterEpoch(Hook):
    """A crash right after the checkpoint of epoch `epoch`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, ctx: TrainContext) -> None:
        if ctx.state.epoch == self.epoch:
            ctx.request_stop("simulated crash")


def resume_config(root: Path, data: Path, out: str, num_workers: int, preset: str = "default") -> JobConfig:
    """Augmentation, dropout, shuffling, warm-up and a cosine schedule: everything that must line up."""
    config = job_config(
        "classification", {**same_split({"root": str(data)}), "num_workers": num_workers},
        {"name": "cnn_small", "channels": [8, 16], "hidden": 32, "dropout": 0.3}, root / out,
        epochs=2, batch_size=4, lr=3e-3, image_size=32, warmup_steps=2,
    )  # fmt: skip
    return config.model_copy(update={"augment": config.augment.model_copy(update={"preset": preset})})


def assert_same_training(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a / LAST), load_checkpoint(b / LAST)
    assert first["train_state"] == second["train_state"]
    for key, tensor in first["model"].items():
        torch.testing.assert_close(second["model"][key], tensor, rtol=0, atol=0, msg=key)
    for key, state in first["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(second["optimizer"]["state"][key][name], value, rtol=0, atol=0)
    assert first["scheduler"] == second["scheduler"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_two_epochs_equal_one_epoch_then_resume(tmp_path: Path, num_workers: int) -> None:
    data = make_class_folders(tmp_path / "data", per_class=6, size=(32, 32))
    straight = train(resume_config(tmp_path, data, "straight", num_workers), show_progress=False)

    config = resume_config(tmp_path, data, "resumed", num_workers)
    crashed = train(config, show_progress=False, extra_hooks=(StopAfterEpoch(1),))
    assert crashed.state.stop_reason == "simulated crash" and crashed.state.epoch == 1
    assert crashed.metrics == {} and not (crashed.run_dir / "metrics.json").exists()
    resumed = train(config, resume=True, show_progress=False)

    assert resumed.state.epoch == straight.state.epoch == 2 and resumed.state.step == straight.state.step == 8
    assert_same_training(straight.run_dir, resumed.run_dir)
    assert scalars(resumed.metrics) == scalars(straight.metrics)


def test_cancelled_mid_epoch_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A cancel request stops between steps; the resumed run skips the batches already seen. Without
    augmentation the result equals an uninterrupted run (with it, the rest of that epoch's
    augmentations are drawn afresh, so only the step count can match)."""
    data = make_class_folders(tmp_path / "data", per_class=6, size=(32, 32))
    straight = train(resume_config(tmp_path, data, "straight", 0, preset="none"), show_progress=False)

    polls = {"n": 0}

    def cancel() -> bool:
        polls["n"] += 1
        return polls["n"] == 6  # after the 2nd step of epoch 2

    progress: list[dict[str, Any]] = []
    config = resume_config(tmp_path, data, "cancelled", 0, preset="none")
    stopped = train(config, show_progress=False, should_stop=cancel, report=progress.append)
    assert stopped.state.stop_reason == "cancelled"
    assert (stopped.state.epoch, stopped.state.batch_in_epoch, stopped.state.step) == (1, 2, 6)
    assert load_checkpoint(stopped.last_checkpoint)["train_state"]["batch_in_epoch"] == 2
    assert progress and progress[-1]["epochs"] == 2

    resumed = train(config, resume=True, show_progress=False)
    assert (resumed.state.epoch, resumed.state.step) == (2, 8)
    assert_same_training(straight.run_dir, resumed.run_dir)


# ------------------------------------------------------------------------------------ bad input


def broken_coco(root: Path) -> tuple[Path, int, int]:
    """A COCO dataset with one polygon of 5 numbers and one missing image file; returns its folder,
    the bad annotation's id and the image id whose file is gone."""
    coco = make_shapes_coco(root, n_images=6, size=(48, 48), seed=4, crowd=False)
    dataset = json.loads(coco.annotations.read_text())
    gone = dataset["images"][-1]
    (coco.images / gone["file_name"]).unlink()
    bad = next(
        a for a in dataset["annotations"] if isinstance(a["segmentation"], list) and a["image_id"] != gone["id"]
    )
    bad["segmentation"] = [[1, 2, 3, 4, 5]]
    coco.annotations.write_text(json.dumps(dataset))
    return root, bad["id"], gone["id"]


def test_dataset_errors_fail_naming_the_ids_unless_skipped(tmp_path: Path) -> None:
    root, bad_ann, gone_image = broken_coco(tmp_path / "data")
    source = {"images": str(root / "images"), "annotations": str(root / "annotations.json")}
    model = {"name": "cnn_small", "channels": [8], "hidden": 16}
    config = job_config("classification", {"train": source}, model, tmp_path / "refused", epochs=1, image_size=32)
    with pytest.raises(DataError) as error:
        train(config, show_progress=False)
    message = str(error.value)
    assert f"annotation {bad_ann}" in message and f"image {gone_image}" in message, message
    assert "skip_invalid" in message
    assert not (tmp_path / "refused" / LAST).exists()
    report = json.loads((tmp_path / "refused" / "validation.json").read_text())  # written before refusing
    assert report["train"]["errors"] == 2

    skipping = job_config(
        "classification", {"train": source, "skip_invalid": True}, model, tmp_path / "skipped", epochs=1, image_size=32
    )
    result = train(skipping, show_progress=False)
    assert result.state.epoch == 1 and (result.run_dir / LAST).is_file()
    report = json.loads((result.run_dir / "validation.json").read_text())
    assert report["train"]["skipped"] == {"images": [gone_image], "annotations": [bad_ann]}
    codes = {i["code"] for i in report["train"]["issues"] if i["severity"] == "error"}
    assert codes == {"bad-polygon", "image-missing"}


def test_epoch_repeats_lengthen_each_epoch_and_still_resume_exactly(tmp_path: Path) -> None:
    """18 images, batch 4, each seen 3 times an epoch: 13 steps an epoch (the last partial batch
    dropped), and a run stopped after its first epoch resumes to the uninterrupted run's weights."""
    data = make_class_folders(tmp_path / "data", per_class=6, size=(32, 32))

    def config(out: str) -> JobConfig:
        base = resume_config(tmp_path, data, out, num_workers=0)
        return base.model_copy(update={"train": base.train.model_copy(update={"epoch_repeats": 3})})

    straight = train(config("straight"), show_progress=False)
    assert straight.state.step == 2 * (18 * 3 // 4)
    crashed = train(config("resumed"), show_progress=False, extra_hooks=(StopAfterEpoch(1),))
    assert crashed.state.step == 18 * 3 // 4
    resumed = train(config("resumed"), resume=True, show_progress=False)
    assert_same_training(straight.run_dir, resumed.run_dir)
