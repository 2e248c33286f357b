"""``segpipe validate``: check a dataset and list what is wrong with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app
from segpipe.task_kinds import TaskKind
from segpipe.vocabulary import IGNORE_INDEX

if TYPE_CHECKING:
    from segpipe.data.validate import Issue, Report

WIDE = 110  # terminal columns from which `validate` prints its issues as a table



@app.command()
def validate(
    config: Path | None = typer.Argument(None, help="Job config YAML: validates its train and val data."),
    images: Path | None = typer.Option(None, "--images", help="Image folder (COCO or mask folders)."),
    annotations: Path | None = typer.Option(None, "--annotations", help="COCO instances JSON."),
    masks: Path | None = typer.Option(None, "--masks", help="Mask PNG folder (mask of a.jpg is a.png)."),
    root: Path | None = typer.Option(None, "--root", help="Class-per-folder root: root/<class>/<images>."),
    path: list[str] = typer.Option(
        [], "--path", help="KEY=PATH: a path key of any registered data layout (`segpipe.layouts`), "
        "such as annotations=coco.json; repeat for each key."
    ),
    task: TaskKind | None = typer.Option(None, "--task", help="Task kind (mask folders: semantic or binary)."),
    classes: str | None = typer.Option(None, "--classes", help="Mask class names by pixel value, comma-separated."),
    foreground_value: int | None = typer.Option(
        None, "--foreground-value", min=0, max=255, help="Binary masks: the foreground value (default: any non-zero)."
    ),
    mask_suffix: str = typer.Option(".png", "--mask-suffix", help="Mask file = image stem + this."),
    ignore_index: int = typer.Option(IGNORE_INDEX, "--ignore-index", min=0, max=255, help="Mask value to ignore."),
    as_json: bool = typer.Option(
        False, "--json", help="Print every issue as JSON on stdout: {ok, errors, warnings, reports: {split: report}}."
    ),
    fast: bool = typer.Option(False, "--fast", help="Read image headers only (no full decode)."),
    max_issues: int = typer.Option(50, "--max-issues", min=0, help="Issues listed per dataset (errors first)."),
    plots: Path | None = typer.Option(
        None, "--plots", help="Also write dataset_summary.png here: images per class, objects per image, "
        "object sizes, image sizes (of the images without errors)."
    ),
    plots_max_images: int = typer.Option(5000, "--plots-max-images", min=1, help="Images read per split for --plots."),
) -> None:
    """Check a dataset (from a job config, or given by paths) and list what is wrong with it.

    Exit status 1 when there are errors, 0 when there are none (warnings allowed).
    """
    # imported here, not at the top: it pulls in OpenCV and NumPy, which `segpipe --help` does not need
    from segpipe.config import load
    from segpipe.data import validate as v

    keyed = _keyed_paths(path)
    if config is not None:
        if any(x is not None for x in (images, annotations, masks, root)) or keyed:
            raise typer.BadParameter("give a CONFIG or dataset paths (--images, ...), not both")
        reports = v.validate_config(load(config), decode=not fast)
    else:
        names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
        report = v.validate_paths(images=images, annotations=annotations, masks=masks, root=root, task=task,
                                  classes=names, foreground_value=foreground_value, mask_suffix=mask_suffix,
                                  ignore_index=ignore_index, decode=not fast, paths=keyed)
        reports = {"dataset": report}
    if as_json:
        _print_json(reports)
    else:
        _print_reports(reports, max_issues)
    if plots is not None:
        from segpipe.cli.dataset_plots import write_dataset_summary

        job = load(config) if config is not None else None
        picture = write_dataset_summary(plots, reports, plots_max_images, config=job, images=images,
                                        annotations=annotations, masks=masks, root=root, task=task, classes=classes,
                                        paths=keyed)
        (sys.stderr if as_json else sys.stdout).write(f"dataset summary: {picture}\n")
    raise typer.Exit(0 if all(r.ok for r in reports.values()) else 1)


def _keyed_paths(items: list[str]) -> dict[str, Path]:
    """``--path KEY=PATH`` options as ``{key: path}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise typer.BadParameter(f"--path {item!r}: expected KEY=PATH")
        out[key.strip()] = Path(value)
    return out


def _print_json(reports: dict[str, Report]) -> None:
    payload = {
        "ok": all(r.ok for r in reports.values()),
        "errors": sum(len(r.errors) for r in reports.values()),
        "warnings": sum(len(r.warnings) for r in reports.values()),
        "reports": {name: r.to_dict() for name, r in reports.items()},
    }
    # plain print, not rich: JSON must not be wrapped or coloured
    print(json.dumps(payload, indent=2, ensure_ascii=False))


def _print_reports(reports: dict[str, Report], max_issues: int) -> None:
    """Issues per report (errors first, at most `max_issues`), then a summary line per report."""
    console = Console(highlight=False)
    for name, report in reports.items():
        issues = sorted(report.issues, key=lambda i: i.severity != "error")  # stable: file order kept
        shown = issues[:max_issues]
        if shown:
            console.print(f"[bold]{name}[/]: {escape(report.source)}", soft_wrap=True)
            # six columns do not fit a narrow terminal (or a pipe, 80 columns): one line per issue there;
            # every message names its image / annotation ids and files already
            if console.width >= WIDE:
                console.print(_issue_table(shown))
            else:
                for issue in shown:
                    colour = "red" if issue.severity == "error" else "yellow"
                    code = escape(f"[{issue.code}]")
                    console.print(f"  [{colour}]{issue.severity}[/] {code} {escape(issue.message)}", soft_wrap=True)
            if len(issues) > len(shown):
                console.print(f"  … {len(issues) - len(shown)} more issues not shown (--max-issues N, or --json)")
        mark = "[green]✓[/]" if report.ok else "[red]✗[/]"
        console.print(f"{mark} {name}: {escape(report.summary())}", soft_wrap=True)


def _issue_table(issues: list[Issue]) -> Table:
    table = Table(expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("code", max_width=26, overflow="fold")
    table.add_column("file", max_width=26, overflow="fold")
    table.add_column("image", no_wrap=True)
    table.add_column("ann.", no_wrap=True)
    table.add_column("message", ratio=1, overflow="fold")
    for issue in issues:
        colour = "red" if issue.severity == "error" else "yellow"
        table.add_row(f"[{colour}]{issue.severity}[/]", issue.code, escape(_short(issue.file)),
                      _id(issue.image_id), _id(issue.annotation_id), escape(issue.message))
    return table


def _short(file: str | None) -> str:
    """Last two path parts (folder/name): enough to tell images/a.png from masks/a.png."""
    if file is None:
        return ""
    return str(Path(*Path(file).parts[-2:]))


def _id(value: int | str | None) -> str:
    return "" if value is None else escape(str(value))
