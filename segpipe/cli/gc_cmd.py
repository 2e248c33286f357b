"""``segpipe gc``: remove old job files under the retention policy (`segpipe.retention`)."""

from __future__ import annotations

from datetime import timedelta

import typer
from rich.console import Console
from rich.markup import escape

from segpipe.cli import app
from segpipe.errors import ConfigError

console = Console(highlight=False)


@app.command()
def gc(
    older_than: float | None = typer.Option(
        None, "--older-than", min=0, help="Days since a job ended (default: SEGPIPE_RUN_RETENTION_DAYS)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
) -> None:
    """Remove the files of jobs that ended long ago, never what a model version or a live job needs."""
    from segpipe.retention import collect
    from segpipe.settings import get_settings
    from segpipe.stores import Stores

    settings = get_settings()
    days = older_than if older_than is not None else settings.run_retention_days
    if days is None:
        raise ConfigError("segpipe gc: give --older-than DAYS or set SEGPIPE_RUN_RETENTION_DAYS")
    report = collect(Stores.from_settings(settings), timedelta(days=days), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in report.removed:
        console.print(f"{verb} {escape(path)}")
    console.print(f"{verb} {len(report.removed)} path(s), {report.freed_bytes / 2**20:.1f} MB "
                  f"(jobs that ended more than {days:g} days ago)")
