"""Local runs, no queue: ``segpipe train | evaluate | predict``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app
from segpipe.errors import ConfigError
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD

console = Console(highlight=False)

OVERRIDES_HELP = "Config overrides as key.sub=value (e.g. train.epochs=3 model.encoder=resnet34)."


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in _scalars(metrics).items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


@app.command()
def train(
    config: Path = typer.Argument(..., help="Job config YAML.", exists=True, dir_okay=False),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from output_dir/last.pt where it stopped."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model locally from a job config (the same config a queued job runs)."""
    from segpipe.config import is_model_ref, load
    from segpipe.engine.runner import train as run_train

    job = load(config, overrides or [])
    if job.model.weights and is_model_ref(job.model.weights):
        from segpipe.jobs.model_refs import resolve_weights_ref
        from segpipe.stores import Stores

        resolve_weights_ref(job, Stores.from_settings())
    console.print(f"training [bold]{job.model.name}[/] ({job.task}) → {escape(str(job.output_dir))}")
    result = run_train(job, resume=resume, show_progress=not quiet)
    if result.state.stop_reason:
        console.print(f"[yellow]stopped:[/] {escape(result.state.stop_reason)}")
    if result.metrics:
        console.print(_metrics_table(result.metrics, f"best epoch {result.state.best_epoch} (validation)"))
    console.print(f"run directory: {escape(str(result.run_dir))}  (plots/, best.pt, last.pt, metrics.json)")


@app.command()
def evaluate(
    config: Path = typer.Argument(..., help="Job config YAML whose data to evaluate on.", exists=True, dir_okay=False),
    weights: Path = typer.Option(..., "--weights", help="Checkpoint file or run directory."),
    split: str = typer.Option("val", "--split", help="Which data split: val or train."),
    as_json: bool = typer.Option(False, "--json", help="Print all metrics as JSON."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Evaluate a trained model on a config's data split."""
    import sys

    from segpipe.config import load
    from segpipe.engine.runner import evaluate_checkpoint
    from segpipe.progress import Reporter, progress

    bar: list[Reporter] = []

    def show(done: int, total: int) -> None:
        if not bar:  # progress goes to stderr under --json, so stdout stays one JSON document
            bar.append(progress("evaluate", total, stream=sys.stderr if as_json else None, console=console))
        bar[0].update(done)

    metrics = evaluate_checkpoint(load(config, overrides or []), weights, split=split, device=device, progress=show)
    if bar:
        bar[0].close()
    if as_json:
        print(json.dumps(metrics, indent=1))
    else:
        console.print(_metrics_table(metrics, f"{split} metrics"))


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="Run directory (uses best.pt) or checkpoint file."),
    images: Path = typer.Option(..., "--images", help="Folder of images to predict."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    formats: str | None = typer.Option(None, "--format", help="Comma-separated export formats: coco, coco-results, "
                                       "cvat-mask, label-studio, png, polygons, overlay, csv (default: the task's)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="COCO file listing the images (ids kept)."),
    score_threshold: float = typer.Option(DEFAULT_SCORE_THRESHOLD, "--score-threshold", min=0, max=1),
    image_url_prefix: str = typer.Option("/data/local-files/?d=", "--image-url-prefix",
                                         help="label-studio: data.image = prefix + file name."),
    segmentation: str = typer.Option("rle", "--segmentation", help="coco / label-studio masks: rle, polygons or both."),
    tile_size: int | None = typer.Option(None, "--tile-size", help="Sliding-window tiles (semantic/binary)."),
    tile_overlap: float = typer.Option(0.25, "--tile-overlap", min=0, max=0.9),
    tile_border: str = typer.Option("zero", "--tile-border", help="Tiles: 'zero' padding or 'mirror' (overlap-tile)."),
    tta: bool = typer.Option(False, "--tta", help="Segmentation: average the 8 flips/rotations of each input."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    topk: int = typer.Option(5, "--topk", min=1, help="Classification: classes per image in csv / coco-results."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Predict masks / boxes / classes for a folder of images and write them in the chosen formats."""
    from segpipe.config import PredictConfig
    from segpipe.engine.predict import image_items
    from segpipe.engine.runner import predict_to_files
    from segpipe.masks.formats import check_formats

    names = check_formats(formats.split(","), None) if formats else None  # unknown names: ConfigError
    if segmentation not in ("rle", "polygons", "both"):
        raise ConfigError(f"--segmentation {segmentation!r}: use rle, polygons or both")
    cfg = PredictConfig(images=images, score_threshold=score_threshold, tile_size=tile_size, tile_overlap=tile_overlap,
                        tile_border=tile_border, tta=tta,
                        formats=names, batch_size=batch_size, topk=topk, image_url_prefix=image_url_prefix,
                        segmentation=segmentation)
    from segpipe.progress import progress

    total = len(image_items(images, annotations))
    bar, done = progress("predict", total, console=console), [0]

    def advance(*_: object) -> None:
        done[0] += 1
        bar.update(done[0])

    try:
        summary = predict_to_files(model, images, out, cfg, annotations=annotations, device=device, on_image=advance,
                                   on_failed=advance)
    finally:
        bar.close()
    console.print(f"{summary['images']} images → {escape(str(out))} ({', '.join(summary['formats'])})")
    for failed in summary["failed_images"]:
        console.print(f"[yellow]skipped[/] image {escape(failed['image'])}: {escape(failed['reason'])}")
