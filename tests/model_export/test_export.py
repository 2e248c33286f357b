"""Export parity per task family: the exported file under onnxruntime / torch.jit matches PyTorch
(classification/semantic logits within 1e-3; Mask R-CNN boxes within 1 px and mask IoU ≥ 0.99 for
matched instances), and the class map, preprocessing and manifest are written beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.data.categories import CategoryMap
from segpipe.model_export import export_model
from tests.model_export.conftest import CLASSES, SHAPES
from tests.models.synth import scene

BINARY = CategoryMap(ids=(3,), names=("cell",), offset=1)
TINY_UNET = {"name": "unet", "encoder_depth": 3, "decoder_channels": [8, 8, 8]}
MASKRCNN = {"name": "maskrcnn_resnet18_fpn", "min_size": 96, "max_size": 128, "box_detections_per_img": 20}


def _shape_images(n: int = 2, size: tuple[int, int] = (80, 96)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [scene(rng, size, [1, 2, 3])[0] for _ in range(n)]


@pytest.mark.parametrize(
    ("task", "model", "cmap"),
    [
        ("classification", {"name": "resnet18"}, CLASSES),
        ("classification", {"name": "cnn_small", "channels": [8, 16], "hidden": 16}, CLASSES),
        ("semantic", TINY_UNET, SHAPES),
        ("binary", {**TINY_UNET, "name": "fpn", "encoder_depth": 5}, BINARY),
    ],
    ids=["resnet18", "cnn_small", "unet-semantic", "fpn-binary"],
)
def test_dense_onnx_logits_match_pytorch(checkpoint, tmp_path: Path, task: str, model: dict, cmap) -> None:
    run = checkpoint(task, {k: v for k, v in model.items() if not (model["name"] == "fpn" and k == "decoder_channels")}, cmap)
    result = export_model(run, tmp_path / "out", "onnx", images=_shape_images(3), check_images=3)
    parity = result.parity
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-3 and parity["inputs"] == 1
    out = result.out_dir
    assert json.loads((out / "classes.json").read_text())["ids"] == list(cmap.ids)
    prep = json.loads((out / "preprocessing.json").read_text())
    assert prep["image_size"] == 64 and prep["mean"][0] == pytest.approx(123.675)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["task"] == task and manifest["files"]["model"] == "model.onnx"
    # the graph really has a dynamic batch and size: another shape runs in onnxruntime
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    side = 64 if task == "classification" else 96  # classifiers take image_size, segmentation any size
    logits = session.run(None, {"images": np.zeros((5, 3, side, side), np.float32)})[0]
    assert logits.shape[0] == 5 and (task == "classification" or logits.shape[2:] == (96, 96))


def test_static_axes_and_torchscript(checkpoint, tmp_path: Path) -> None:
    run = checkpoint("semantic", TINY_UNET, SHAPES)
    result = export_model(run, tmp_path / "ts", "torchscript", dynamic=(), image_size=32)
    assert result.parity["passed"] and result.model_file.name == "model.ts"
    onnx = export_model(run, tmp_path / "onnx", "onnx", dynamic=(), image_size=32)
    session = ort.InferenceSession(str(onnx.model_file), providers=["CPUExecutionProvider"])
    assert list(session.get_inputs()[0].shape) == [2, 3, 32, 32]  # the check's batch of 2, fixed


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_mask_rcnn_boxes_and_masks_match(checkpoint, tmp_path: Path, fmt: str) -> None:
    run = checkpoint("instance", MASKRCNN, SHAPES)
    result = export_model(run, tmp_path / fmt, fmt, images=_shape_images(2))
    parity = result.parity
    assert parity["instances_torch"] > 0  # random heads still detect: the check compares something
    assert parity["matched"] == parity["instances_torch"] == parity["instances_exported"]
    assert parity["max_box_diff_px"] <= 1.0 and parity["min_mask_iou"] >= 0.99
    assert parity["passed"]
    assert json.loads((result.out_dir / "preprocessing.json").read_text())["min_size"] == 96


@pytest.mark.slow
def test_faster_rcnn_onnx(checkpoint, tmp_path: Path) -> None:
    run = checkpoint("detection", {**MASKRCNN, "name": "fasterrcnn_mobilenet_v3_large_fpn"}, SHAPES)
    result = export_model(run, tmp_path / "onnx", "onnx", images=_shape_images(2))
    assert result.parity["passed"] and result.parity["min_mask_iou"] is None
    assert result.manifest["outputs"] == ["boxes", "labels", "scores"]


def test_cli_exports_beside_the_checkpoint_and_records_it(checkpoint) -> None:
    run = checkpoint("classification", {"name": "cnn_small", "channels": [8], "hidden": 8}, CLASSES)
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert "parity ok: max abs logit difference" in result.output
    assert (run / "export" / "onnx" / "model.onnx").is_file()
    exports = json.loads((run / "exports.json").read_text())
    assert exports["onnx"]["parity"]["passed"] is True
    bad = CliRunner().invoke(app, ["export", str(run), "--format", "tflite"])
    assert bad.exit_code == 2 and "unknown model export format 'tflite'; known: onnx, torchscript" in bad.output


def test_export_of_a_model_version_is_recorded_beside_it(checkpoint, tmp_path: Path, monkeypatch) -> None:
    """``segpipe export NAME@N`` resolves the version through the store and writes beside its checkpoint."""
    from segpipe import config as config_mod
    from segpipe.settings import get_settings
    from segpipe.stores import Stores

    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("SEGPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEGPIPE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("SEGPIPE_ARTIFACT_ROOT", str(artifacts))
    get_settings.cache_clear()
    try:
        from tests.model_export.conftest import write_checkpoint

        run = write_checkpoint(artifacts / "jobs" / "j1" / "run", "semantic", TINY_UNET, SHAPES)
        stores = Stores.from_settings()
        config = config_mod.from_dict({"task": "semantic", "model": TINY_UNET})
        stores.versions.register("shapes", "semantic", config_mod.dump(config), checkpoint="jobs/j1/run/best.pt")
        stores.versions.promote("shapes", 1)
        result = CliRunner().invoke(app, ["export", "shapes@production", "--format", "torchscript"])
        assert result.exit_code == 0, result.output
        exports = json.loads((run / "exports.json").read_text())
        assert exports["torchscript"]["dir"] == "jobs/j1/run/export/torchscript"  # relative to the artifact root
        assert (run / "export" / "torchscript" / "model.ts").is_file()
        listed = CliRunner().invoke(app, ["models", "shapes", "--json"])
        assert listed.exit_code == 0, listed.output
        version = json.loads(listed.output)["versions"][0]
        assert version["exports"]["torchscript"]["parity"]["passed"] is True and version["load_report"] is None
        missing = CliRunner().invoke(app, ["export", "shapes@7"])
        assert missing.exit_code == 2 and "shapes@7: no such version" in missing.output
        stores.close()
    finally:
        get_settings.cache_clear()
