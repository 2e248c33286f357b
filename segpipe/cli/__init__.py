"""The ``segpipe`` command line: a thin door onto the library, one small function per command.

Commands parse their options, call one library function and print its result; no ML or data logic
lives here. A `SegpipeError` from any command prints as one red line on stderr and exits with status
2 (no traceback): `_Group.invoke` catches it for every command, present and future.

Exit statuses: 0 success, 1 the command ran and found a problem (e.g. validation errors), 2 bad
input (config, paths, options).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from segpipe.errors import SegpipeError


class _Group(TyperGroup):
    """Runs every subcommand; turns a SegpipeError into a one-line message and exit status 2."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # click's base Context is private to typer
        try:
            return super().invoke(ctx)
        except SegpipeError as e:
            Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="segpipe",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    help="Train, evaluate and run segmentation / detection models on COCO-style data.",
)


def _version(value: bool) -> None:
    if value:
        try:
            number = version("segpipe")
        except PackageNotFoundError:  # running from a source tree that was never installed
            number = "unknown"
        print(f"segpipe {number}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, evaluate and run segmentation / detection models on COCO-style data."""



# Each module registers its commands on `app` when imported.
from segpipe.cli import (  # noqa: E402,F401
    data_cmds,
    export_cmd,
    gc_cmd,
    inspect_cmd,
    labelstudio_cmds,
    model_cmds,
    run_cmds,
    service_cmds,
    snapshot_cmds,
    validate_cmd,
    weights_cmds,
)
