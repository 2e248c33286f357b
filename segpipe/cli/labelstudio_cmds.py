"""``segpipe labelstudio connect``: one command from a stock Label Studio to pre-labels (`segpipe.labelstudio.connect`)."""

from __future__ import annotations

import json
import os

import typer
from rich.console import Console
from rich.markup import escape

from segpipe.cli import app
from segpipe.errors import ConfigError

console = Console(highlight=False)
labelstudio_app = typer.Typer(no_args_is_help=True, help="Wire Label Studio projects to segpipe models.")
app.add_typer(labelstudio_app, name="labelstudio")
ACTION_COLOURS = {"created": "green", "updated": "yellow", "removed": "red", "unchanged": "bright_black"}


@labelstudio_app.command("connect")
def connect_cmd(
    model: str = typer.Argument(..., help="The model version: NAME@production, NAME@latest or NAME@N."),
    project: str = typer.Option(..., "--project", help="Label Studio project id, or a title (created if new)."),
    url: str | None = typer.Option(None, "--url", help="Label Studio's URL (default SEGPIPE_LABEL_STUDIO_URL)."),
    token: str | None = typer.Option(None, "--token", help="Label Studio token: personal access or legacy, with or "
                                     "without 'Token ' (default SEGPIPE_LABEL_STUDIO_TOKEN)."),
    segpipe_url: str = typer.Option(..., "--segpipe-url", help="segpipe's API as Label Studio reaches it, "
                                    "e.g. http://segpipe-api:8000."),
    segpipe_token: str | None = typer.Option(None, "--segpipe-token", help="The segpipe token Label Studio sends "
                                             "(annotator is enough; default SEGPIPE_TOKEN)."),
    local_files: str | None = typer.Option(None, "--local-files", help="Add a local-files storage for this folder "
                                           "(as Label Studio sees it, under its document root)."),
    document_root: str | None = typer.Option(None, "--document-root", help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT "
                                             "(default SEGPIPE_LABEL_STUDIO_FILES_ROOT): prints the image-URL prefix."),
    as_json: bool = typer.Option(False, "--json", help="Print the steps as JSON."),
) -> None:
    """Create or update the project's labeling config, ML backend (with auth), webhook (with auth) and
    storage so Label Studio gets segpipe's predictions; running it again changes nothing."""
    from segpipe.api.errors import ApiError
    from segpipe.api.labelstudio.model_info import resolve_model
    from segpipe.cli.service_cmds import _open
    from segpipe.labelstudio.connect import ConnectRequest, ModelClasses, connect

    stores, _, settings = _open()
    ls_url = url or settings.label_studio_url
    ls_token = token or settings.label_studio_token
    if not ls_url:
        raise ConfigError("--url: give Label Studio's URL, or set SEGPIPE_LABEL_STUDIO_URL")
    if not ls_token:
        raise ConfigError("--token: give a Label Studio token, or set SEGPIPE_LABEL_STUDIO_TOKEN")
    backend_token = segpipe_token or os.environ.get("SEGPIPE_TOKEN")
    if not backend_token:
        raise ConfigError("--segpipe-token: give the segpipe token Label Studio should send (or set SEGPIPE_TOKEN)")
    try:
        info = resolve_model(stores, model)
    except ApiError as e:
        raise ConfigError(e.message) from None
    root = document_root or (str(settings.label_studio_files_root) if settings.label_studio_files_root else None)
    result = connect(ConnectRequest(
        label_studio_url=ls_url, label_studio_token=ls_token,
        model=ModelClasses(model, info.task, info.categories, info.label),
        segpipe_url=segpipe_url, segpipe_token=backend_token, project=project, local_files=local_files,
        document_root=root,
    ))  # fmt: skip
    if as_json:
        print(json.dumps(result.to_dict(), indent=1))
        return
    console.print(f"Label Studio project #{result.project_id} ↔ {escape(result.backend_url)}")
    for step in result.steps:
        colour = ACTION_COLOURS.get(step.action, "white")
        console.print(f"  {escape(step.what)}: [{colour}]{step.action}[/] — {escape(step.detail)}")
    if result.image_url_prefix:
        console.print(f"exports for this project: segpipe masks JOB --format label-studio --image-url-prefix "
                      f"'{escape(result.image_url_prefix)}'")
    console.print("nothing changed: already connected" if not result.changed else "connected")
