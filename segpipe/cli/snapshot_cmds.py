"""``segpipe data pull | snapshots``: annotations that come back from the annotation tools, as snapshots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app
from segpipe.snapshots.formats import SNAPSHOT_FORMATS

if TYPE_CHECKING:
    from segpipe.snapshots.store import SnapshotStore

console = Console(highlight=False, soft_wrap=True)
data_app = typer.Typer(no_args_is_help=True, help="Dataset snapshots pulled from the annotation tools.")
app.add_typer(data_app, name="data")


def _store() -> SnapshotStore:
    from segpipe.settings import get_settings
    from segpipe.snapshots.store import SnapshotStore

    return SnapshotStore.from_settings(get_settings())


@data_app.command("pull")
def pull(
    format: str = typer.Argument(..., help=f"Source format: {', '.join(SNAPSHOT_FORMATS.names())}."),
    source: str = typer.Argument(..., help="The export archive (zip) as the tool wrote it; for label-studio, "
                                           "the project id."),
    model: str | None = typer.Option(None, "--model", help="label-studio: the model (NAME@production, a run "
                                                            "folder…) whose classes the project's labels map to."),
) -> None:
    """Read an annotation tool's export into an immutable, content-hashed snapshot in the artifact root."""
    from segpipe.settings import get_settings
    from segpipe.snapshots.formats import ARCHIVE_FORMATS, PullContext
    from segpipe.snapshots.pull import pull as do_pull

    if format in ARCHIVE_FORMATS and not Path(source).is_file():
        raise typer.BadParameter(f"{source} is not a file", param_hint="SOURCE")
    classes = _model_classes(model) if model else None
    context = PullContext(get_settings(), [name for _id, name in classes], [cid for cid, _name in classes]) \
        if classes is not None else PullContext(get_settings())
    snapshot, new = do_pull(_store(), format, source, context)
    what = "new snapshot" if new else "unchanged: same content as snapshot"
    console.print(f"{what} {snapshot.id}: {snapshot.images} images, {snapshot.annotations} annotations, "
                  f"labels {', '.join(snapshot.categories)}")
    console.print(f"  COCO for a train config: images {escape(snapshot.path)}/images, annotations "
                  f"{escape(snapshot.path)}/annotations.json")


def _model_classes(model: str) -> list[tuple[int, str]]:
    """The classes (COCO id, name) of a model version (NAME@production, NAME@3…), from the categories.json
    its run wrote — the same reading the Label Studio backend does, no torch."""
    from segpipe.api.errors import ApiError
    from segpipe.api.labelstudio.model_info import resolve_model
    from segpipe.errors import ConfigError
    from segpipe.stores import Stores

    try:
        return resolve_model(Stores.from_settings(), model).categories
    except ApiError as e:
        raise ConfigError(f"--model {model}: {e.message}") from None


@data_app.command("snapshots")
def snapshots(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """List the snapshots, newest first: id, source, counts, hash and time."""
    found = _store().list()
    if as_json:
        for snapshot in found:
            print(json.dumps(asdict(snapshot)))
        return
    table = Table("id", "created", "images", "annotations", "source")
    for s in found:
        table.add_row(s.id, s.created_at, str(s.images), str(s.annotations), escape(s.source))
    console.print(table if found else "no snapshots yet: segpipe data pull FORMAT ARCHIVE")
