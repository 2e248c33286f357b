"""``segpipe inspect``: what a CNN sees — layer table with output-size arithmetic, filters, feature maps."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app
from segpipe.cli.run_cmds import OVERRIDES_HELP

console = Console(highlight=False)


@app.command()
def inspect(
    config: Path | None = typer.Argument(None, help="Job config YAML: inspect its model, untrained.", dir_okay=False),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    model: Path | None = typer.Option(None, "--model", help="Run directory (best.pt) or checkpoint: the trained model."),
    image: Path | None = typer.Option(None, "--image", help="Draw what chosen layers output for this image."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated layer names for --image (default: 4 evenly spaced conv layers)."
    ),
    out: Path = typer.Option(Path("inspect"), "--out", help="Folder for filters.png, input.png and feature maps."),
    table_only: bool = typer.Option(False, "--table-only", help="Print the layer table only; write no PNGs."),
    depth: int | None = typer.Option(None, "--depth", min=1, help="Show modules this deep as rows (1 = top blocks)."),
    size: int | None = typer.Option(None, "--size", min=1, help="Input side in pixels (default: train.image_size)."),
    num_labels: int | None = typer.Option(
        None, "--num-labels", min=1, help="CONFIG only: model labels (default: from data.categories / classes)."
    ),
    channels: int = typer.Option(16, "--channels", min=1, help="Channels per feature-map grid."),
    device: str = typer.Option("cpu", "--device", help="--model only: cpu, cuda, cuda:N, auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Show what a CNN does: every layer with its output size worked out, the first layer's filters, and
    (with --image) what chosen layers see. From a job CONFIG (untrained) or a trained run (--model)."""
    from segpipe.inspection import COLUMNS, display_rows, from_config, from_run, inspect_model

    if (config is None) == (model is None):
        raise typer.BadParameter("give a job CONFIG or --model RUN_DIR_OR_CHECKPOINT (one of them)")
    if model is not None and (overrides or num_labels is not None):
        raise typer.BadParameter("config overrides and --num-labels only apply to a CONFIG")
    if table_only and (image is not None or layers):
        raise typer.BadParameter("--table-only writes no PNGs: drop --image / --layers")
    if config is not None:
        from segpipe.config import load

        subject = from_config(load(config, overrides or []), num_labels=num_labels, source=str(config))
    else:
        assert model is not None  # one of the two, checked above
        subject = from_run(model, device=device)
    names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    result = inspect_model(subject, image=image, layers=names, out_dir=None if table_only else out, depth=depth,
                           image_size=size, max_channels=channels)
    files = ([result.filter_grid.path] if result.filter_grid else []) + [f.path for f in result.feature_maps]
    if as_json:
        print(json.dumps({**asdict(result.table), "model": result.model_name, "task": result.task,
                          "source": result.source, "notes": result.notes, "files": [str(f) for f in files]},
                         default=str, indent=1))
        return

    table = Table(title=f"{result.model_name} ({result.task}, {result.num_labels} labels) on input "
                        f"{'×'.join(map(str, result.table.input_shape))}")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("#", "params") else "left")
    for row, cells in zip(result.table.rows, display_rows(result.table), strict=True):
        table.add_row(*map(escape, cells), style="red" if row.matches is False else None)
    console.print(table)
    t = result.table
    scope = f" in {t.scope} (model: {t.model_params:,})" if t.scope else ""
    console.print(f"parameters: {t.total_params:,}{scope}, trainable {t.trainable_params:,}  — {escape(result.source)}")
    if t.unlisted:
        console.print("parameters on no row: " + ", ".join(f"{escape(k)} {v:,}" for k, v in t.unlisted.items()))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if files:
        console.print(f"wrote {len(files) + bool(result.feature_maps)} PNGs to {escape(str(files[0].parent))}: "
                      + ", ".join(escape(p.name) for p in files) + (", input.png" if result.feature_maps else ""))
