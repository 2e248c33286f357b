"""``segpipe weights pull NAME`` / ``segpipe weights list``: named pretrained weights in the shared store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app

console = Console(highlight=False)
weights_app = typer.Typer(help="Pretrained weights by name (torchvision:…, smp:…), kept in the artifact store.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("pull")
def pull(
    name: str = typer.Argument(..., help="torchvision:ENUM.ENTRY, torchvision:DEFAULT (with --model) or smp:ENCODER/WEIGHTS."),
    model: str = typer.Option(None, "--model", help="The config's model.name (what torchvision:DEFAULT means)."),
    file: Path = typer.Option(None, "--file", help="Take this file, downloaded elsewhere, instead of the URL.",
                              exists=True, dir_okay=False),
    sha256: str = typer.Option(None, "--sha256", help="With --file: the sha256 the host publishes (smp names)."),
) -> None:
    """Download named weights into the artifact store once (checksum checked); later uses read that copy."""
    from segpipe.pretrained import WeightStore

    path = WeightStore.from_settings().pull(name, model=model, file=file, sha256=sha256)
    console.print(f"{escape(name)}: {escape(str(path))}")


@weights_app.command("list")
def list_weights(as_json: bool = typer.Option(False, "--json", help="Machine-readable.")) -> None:
    """The named weights in the artifact store: file, size, name and sha256."""
    from segpipe.pretrained import WEIGHT_SOURCES, WeightStore

    store = WeightStore.from_settings()
    found = list(store.list())
    rows = [{"file": w.key, "bytes": w.size, "name": w.note.get("name"), "sha256": w.note.get("sha256"),
             "url": w.note.get("url")} for w in found]
    if as_json:
        print(json.dumps({"folder": str(store.remote or store.folder), "weights": rows}))
        return
    table = Table("file", "MB", "name", "sha256", title=f"weights in {escape(str(store.remote or store.folder))}")
    for w in found:
        table.add_row(escape(w.key), f"{w.size / 2**20:.1f}", escape(str(w.note.get("name") or "")),
                      str(w.note.get("sha256") or "")[:16])
    console.print(table)
    if not rows:
        examples = ", ".join(e.obj.example for e in WEIGHT_SOURCES)
        console.print(f"none yet: `segpipe weights pull NAME` ({escape(examples)})")
