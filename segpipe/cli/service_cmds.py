"""The job service from the terminal: ``submit | jobs | job | cancel | requeue | masks | worker | beat | api``.

These talk to the store and the broker named by the ``SEGPIPE_*`` settings (embedded SQLite by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe import job_kinds
from segpipe.cli import app
from segpipe.cli.run_cmds import OVERRIDES_HELP
from segpipe.errors import ConfigError
from segpipe.masks.formats import PREDICTION_FORMATS
from segpipe.masks.rows import DEFAULT_SCORE_THRESHOLD
from segpipe.vocabulary import DEFAULT_SEGMENTATION, SEGMENTATION_CHOICES

console = Console(highlight=False)
STATE_COLOURS = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


def _open() -> tuple[Any, Any, Any]:
    from segpipe.settings import get_settings
    from segpipe.stores import Stores
    from workers.celery_app import create_app

    settings = get_settings()
    return Stores.from_settings(settings), create_app(settings), settings


def _state(state: str) -> str:
    return f"[{STATE_COLOURS.get(state, 'white')}]{state}[/]"


@app.command()
def submit(
    config: Path = typer.Argument(..., help="Job config / spec YAML.", exists=True, dir_okay=False),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    kind: str = typer.Option("train", "--kind", help="One of: " + ", ".join(job_kinds.submittable()) + "."),
    queue: str | None = typer.Option(None, "--queue", help="gpu or cpu (default: by job kind)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow the job's progress until it ends."),
) -> None:
    """Queue a job; a `segpipe worker` runs it. Paths must lie inside SEGPIPE_DATA_ROOTS."""
    from segpipe.service import submit as do_submit

    stores, celery_app, settings = _open()
    spec = _read_spec(config, kind, overrides or [])
    job = do_submit(stores, celery_app, settings, kind, spec, submitted_by="cli", queue=queue)
    console.print(f"queued {kind} job [bold]{job.id}[/] on queue {job.queue}")
    if follow:
        _follow(stores, job.id)


def _read_spec(path: Path, kind: str, overrides: list[str]) -> dict[str, Any]:
    """A job spec file of `kind`, validated, its relative paths taken from the file's folder (URIs and
    model references as written): the loader's rule (`segpipe.config.resolve_paths`), for every kind."""
    from segpipe import config as config_mod
    from segpipe.jobs.specs import parse_spec

    raw = config_mod.apply_overrides(config_mod.parse_yaml(path.read_text(), source=str(path), aliases=True), overrides)
    spec = parse_spec(kind, raw, source=str(path))
    config_mod.resolve_paths(spec, path.parent.resolve())
    return spec.model_dump(mode="json")


@app.command()
def jobs(
    state: str | None = typer.Option(None, "--state"),
    kind: str | None = typer.Option(None, "--kind"),
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List jobs, newest first."""
    stores, _, _ = _open()
    rows, total = stores.jobs.list(state=state, kind=kind, limit=limit, offset=0)
    if as_json:
        print(json.dumps([_job_dict(j) for j in rows], indent=1, default=str))
        return
    table = Table(title=f"jobs ({len(rows)} of {total})")
    for col in ("id", "kind", "state", "progress", "created", "error"):
        table.add_column(col, overflow="fold")
    for j in rows:
        table.add_row(j.id, j.kind, _state(j.state), _progress_text(j.progress or {}),
                      j.created_at.strftime("%Y-%m-%d %H:%M:%S"), escape(j.error or ""))
    console.print(table)


def _job_dict(job: Any) -> dict[str, Any]:
    keys = ("id", "kind", "state", "queue", "progress", "error", "worker", "attempts", "artifacts",
            "created_at", "started_at", "finished_at", "model_name", "submitted_by")
    return {k: getattr(job, k, None) for k in keys}


def _progress_text(p: dict[str, Any]) -> str:
    if p.get("images_total"):
        failed = f", {p['images_failed']} unreadable" if p.get("images_failed") else ""
        return f"{p.get('images_done', 0)}/{p['images_total']} images{failed}"
    if p.get("epochs"):
        metrics = p.get("metrics") or {}
        shown = " ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:2] if isinstance(v, (int, float)))
        return f"epoch {p.get('epoch', 0)}/{p['epochs']} {shown}".strip()
    return p.get("phase", "")


@app.command()
def job(
    job_id: str = typer.Argument(...),
    follow: bool = typer.Option(False, "--follow", "-f", help="A live progress bar until the job ends."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one job (state, progress, error, artifacts)."""
    stores, _, _ = _open()
    if follow:
        _follow(stores, job_id)
    j = stores.jobs.get(job_id)
    if as_json:
        print(json.dumps({**_job_dict(j), "traceback": j.traceback}, indent=1, default=str))
        return
    console.print(f"[bold]{j.id}[/]  {j.kind}  {_state(j.state)}  attempts {j.attempts}  worker {j.worker or '-'}")
    console.print(f"progress: {_progress_text(j.progress or {})}")
    for warning in (j.progress or {}).get("warnings") or []:
        console.print(f"[yellow]warning:[/] {escape(str(warning))}")
    for failed in (j.progress or {}).get("failed_images") or []:
        console.print(f"[yellow]skipped[/] image {escape(str(failed.get('image')))}: {escape(str(failed.get('reason')))}")
    if j.error:
        console.print(f"[red]error:[/] {escape(j.error)}")
    for name, rel in (j.artifacts or {}).items():
        console.print(f"  {escape(name)}: {escape(str(stores.artifacts.job_dir(j.id) / rel))}")


def _follow(stores: Any, job_id: str, poll_s: float = 1.0) -> str:
    """A progress bar on a terminal, plain lines otherwise, until the job ends; returns its final state."""
    from segpipe.cli.follow import follow

    return follow(stores, job_id, console, poll_s)


@app.command()
def requeue(
    job_ids: list[str] = typer.Argument(None, help="Queued jobs to check (default: every queued job)."),
    older_than: float = typer.Option(0.0, "--older-than", help="Only jobs queued at least this many seconds."),
) -> None:
    """Re-publish queued jobs whose broker message is gone (e.g. after Redis restarted without AOF).

    A job whose message is still waiting or delivered is left alone, and a worker drops any duplicate
    of a job it already runs or ran, so running this twice is harmless. Prints the jobs re-published."""
    from segpipe.service import republish_lost

    stores, celery_app, _ = _open()
    done = republish_lost(stores, celery_app, lost_after_seconds=older_than, job_ids=job_ids or None)
    for job_id in done:
        console.print(f"re-published job [bold]{job_id}[/]")
    console.print(f"{len(done)} job(s) re-published")


@app.command()
def cancel(job_id: str = typer.Argument(...)) -> None:
    """Cancel a job: a queued one at once, a running one at its next step (checkpoint kept)."""
    from segpipe.service import cancel as do_cancel

    stores, celery_app, _ = _open()
    state = do_cancel(stores, celery_app, job_id)
    console.print(f"job {job_id}: {_state(state)}" + (" (stop requested)" if state == "running" else ""))


@app.command()
def masks(
    job_id: str = typer.Argument(..., help="A finished predict job."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    fmt: str = typer.Option("coco", "--format", help="Comma-separated prediction formats: "
                            f"{', '.join(PREDICTION_FORMATS.names())}."),
    score_threshold: float = typer.Option(DEFAULT_SCORE_THRESHOLD, "--score-threshold", min=0, max=1),
    image_url_prefix: str = typer.Option("/data/local-files/?d=", "--image-url-prefix",
                                         help="label-studio: data.image = prefix + file name."),
    segmentation: str = typer.Option(DEFAULT_SEGMENTATION, "--segmentation",
                                     help=f"coco / label-studio masks: {', '.join(SEGMENTATION_CHOICES)}."),
    with_images: bool = typer.Option(False, "--with-images", help="coco: copy the images into images/."),
    categories: str | None = typer.Option(None, "--categories", help="Only these categories, by original id, "
                                          "comma-separated (e.g. 3,7); default: all."),
    duplicates: str = typer.Option("auto", "--duplicates", help="Overlapping instances (any class): suppress, keep, "
                                   "or auto (suppressed in label-studio and cvat-mask, kept elsewhere)."),
) -> None:
    """Export a predict job's stored predictions, ready to import into CVAT / Label Studio as they are.

    The job stored every instance above a low floor: --score-threshold is a view, a lower one gives more."""
    from segpipe.jobs.exports import export_job
    from segpipe.masks.formats import parse_category_ids

    if segmentation not in SEGMENTATION_CHOICES:
        raise ConfigError(f"--segmentation {segmentation!r}: use one of {', '.join(SEGMENTATION_CHOICES)}")
    modes: dict[str, bool | None] = {"auto": None, "suppress": True, "keep": False}
    if duplicates not in modes:
        raise ConfigError(f"--duplicates {duplicates!r}: use suppress, keep or auto")
    suppress = modes[duplicates]
    stores, _, _ = _open()
    files = export_job(stores, job_id, out, fmt.split(","), score_threshold=score_threshold,
                       image_url_prefix=image_url_prefix, segmentation=segmentation, with_images=with_images,
                       only_categories=parse_category_ids(categories), suppress_duplicates=suppress)
    for name, written in files.items():
        console.print(f"{name}: {len(written)} files → {escape(str(out))}")


@app.command()
def worker(
    queues: str = typer.Option("gpu,cpu,interactive", "--queues", "-Q", help="Queues to consume, comma-separated."),
    loglevel: str = typer.Option("info", "--loglevel"),
    reconcile_every: float = typer.Option(30.0, "--reconcile-every", help="Seconds between orphan checks (0: off)."),
    name: str | None = typer.Option(None, "--name", help="Worker node name (default: segpipe-<pid>@host)."),
    gpus: str | None = typer.Option(
        None, "--gpus", help="One worker process per GPU id (e.g. 0,1,2,3), each with its own CUDA_VISIBLE_DEVICES, "
        "supervised and restarted if it dies."),
    interactive_slot: bool = typer.Option(
        True, "--interactive-slot/--no-interactive-slot", help="With 'interactive' among other queues, serve it "
        "in a reserved child process, so Label Studio's predictions never wait behind a training job."),
) -> None:
    """Run a worker: one job at a time in this process (solo pool: CUDA does not survive fork).

    By default it consumes gpu, cpu and interactive; interactive (the Label Studio ML backend's short
    predict jobs) runs in a reserved child process, so it is answered while a training job runs."""
    from segpipe.worker import run_worker

    if gpus is not None:
        import logging

        from segpipe.settings import get_settings
        from segpipe.stores.db import Store
        from segpipe.supervisor import Supervisor, parse_gpus, worker_command

        Store.from_url(get_settings().db_url).dispose()  # one line naming the database if it does not answer
        logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        Supervisor(parse_gpus(gpus), worker_command(queues, loglevel, reconcile_every, name)).run()
        return

    run_worker(queues=[q.strip() for q in queues.split(",") if q.strip()], loglevel=loglevel,
               reconcile_every=reconcile_every, name=name, interactive_slot=interactive_slot)


@app.command()
def beat(loglevel: str = typer.Option("info", "--loglevel")) -> None:
    """Run Celery beat: the reconciler and the retraining schedule."""
    from segpipe.settings import get_settings
    from workers.celery_app import app as celery_app

    schedule = get_settings().home_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.Beat(loglevel=loglevel, schedule=str(schedule)).run()


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", min=1),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs), with header and keep-alive timeouts (segpipe.api.server)."""
    import sys

    from segpipe.metrics.exposition import enable_multiprocess
    from segpipe.settings import get_settings

    # before prometheus_client is imported: it picks its multiprocess mode at import
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess mode was set")
    enable_multiprocess(get_settings().home_dir / "metrics" / f"api-{port}")
    from segpipe.api.server import serve

    serve(host, port, workers)


@app.command()
def demo(
    home: Path = typer.Option(Path(".segpipe"), "--home", help="Where the demo's store, broker, data and artifacts live."),
    out: Path = typer.Option(Path("demo_out"), "--out", help="Where masks and overlay pictures are written."),
    epochs: int = typer.Option(5, "--epochs", min=1),
    images: int = typer.Option(80, "--images", min=4, help="Training images to generate."),
) -> None:
    """The whole service end to end, no server to set up: dataset → worker → train job → predict job → masks."""
    from segpipe.cli.demo import DemoPlan, run_demo

    raise typer.Exit(run_demo(DemoPlan(home=home, out=out, epochs=epochs, train_images=images, image_size=96)))
