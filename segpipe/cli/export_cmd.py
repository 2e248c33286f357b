"""``segpipe export RUN_OR_VERSION --format onnx|torchscript``: a deployable graph, checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from segpipe.cli import app

console = Console(highlight=False)


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Run directory, checkpoint, or model version NAME@production / NAME@3."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN/export/FORMAT)."),
    image_size: int | None = typer.Option(
        None, "--image-size", min=16, help="Input side for classification/segmentation (default: training size)."
    ),
    dynamic: str = typer.Option(
        "batch,size", "--dynamic", help="Dynamic axes of dense graphs: 'batch', 'size', both, or 'none'."
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Folder of images for the parity check (default: seeded random images)."
    ),
    check_images: int = typer.Option(2, "--check-images", min=1, help="How many images the parity check runs on."),
) -> None:
    """Export a trained model to ONNX or TorchScript, with its class map and preprocessing, and check it."""
    from segpipe.config import is_model_ref
    from segpipe.data.images import read_image
    from segpipe.engine.predict import image_items, resolve_checkpoint
    from segpipe.export import EXPORT_FORMATS, export_model, record_export

    EXPORT_FORMATS.get(fmt)  # unknown formats fail before any work, listing the known ones
    base = None
    if is_model_ref(model):
        from segpipe.jobs.model_refs import resolve_model_ref
        from segpipe.stores import Stores

        stores = Stores.from_settings()
        checkpoint = resolve_checkpoint(resolve_model_ref(model, stores))
        base = stores.artifacts.root
    else:
        checkpoint = resolve_checkpoint(model)
    axes = tuple(a.strip() for a in dynamic.split(",") if a.strip() and a.strip() != "none")
    arrays = None
    if images is not None:
        arrays = [read_image(it.path) for it in image_items(images)[:check_images]]
    target = out or checkpoint.parent / "export" / fmt
    console.print(f"exporting {escape(str(checkpoint))} as {fmt} → {escape(str(target))}")
    result = export_model(checkpoint, target, fmt, image_size=image_size, dynamic=axes, images=arrays,
                          check_images=check_images)
    record_export(checkpoint.parent, result, base)
    parity = result.parity
    if parity["kind"] == "logits":
        figures = f"max abs logit difference {parity['max_abs_diff']:.2e} (tolerance {parity['tolerance']:g})"
    else:
        mask = "" if parity["min_mask_iou"] is None else f", min mask IoU {parity['min_mask_iou']:.4f}"
        figures = (f"{parity['matched']}/{parity['instances_torch']} instances matched "
                   f"({parity['instances_exported']} exported), max box difference "
                   f"{parity['max_box_diff_px']:.3f} px{mask}")
    verdict = "[green]parity ok[/]" if parity["passed"] else "[bold red]parity FAILED[/]"
    console.print(f"{verdict}: {figures} on {parity['images']}")
    print(json.dumps({"model": str(result.model_file), **{k: v for k, v in result.manifest.items()
                                                          if k in ("format", "task", "parity")}}))
    if not parity["passed"]:
        raise typer.Exit(1)
