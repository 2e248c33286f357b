"""Model versions and retraining: ``segpipe models | promote | rollback | retrain | schedule``.

``segpipe models`` lists the model names with versions (``--architectures`` lists what a config's
``model.name`` can be); ``segpipe models NAME`` shows one model's versions and every promotion decision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segpipe.cli import app
from segpipe.task_kinds import TRAITS

console = Console(highlight=False)
STAGE_COLOURS = {"production": "green", "candidate": "cyan", "archived": "bright_black"}
OUTCOME_COLOURS = {"promoted": "green", "rejected": "red"}
SCHEDULE_HELP = "Schedule file (default: SEGPIPE_SCHEDULE, else configs/schedule.yaml)."


def _open() -> tuple[Any, Any, Any]:
    from segpipe.cli.service_cmds import _open as open_service

    return open_service()


def _stage(stage: str) -> str:
    return f"[{STAGE_COLOURS.get(stage, 'white')}]{stage}[/]"


def _outcome(outcome: str) -> str:
    return f"[{OUTCOME_COLOURS.get(outcome, 'white')}]{outcome}[/]"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


# Shown first in listings: each task's headline metric (the evaluators' `primary_metric`).
HEADLINE = {name: kind.headline_metric for name, kind in TRAITS.items()}


def _metrics_text(metrics: dict[str, Any], task: str | None = None, limit: int = 3) -> str:
    shown = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not k.startswith("val_loss")}
    first = HEADLINE.get(task or "")
    order = ([first] if first in shown else []) + [k for k in shown if k != first]
    return " ".join(f"{k} {shown[k]:.3f}" for k in order[:limit])


def _short_hash(digest: str | None) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


def _version_dict(v: Any, stores: Any = None) -> dict[str, Any]:
    keys = ("name", "version", "task", "stage", "dataset_hash", "metrics", "checkpoint", "parent_version",
            "job_id", "created_at")
    out = {k: getattr(v, k) for k in keys}
    if stores is not None:  # the load report of its starting weights, its exports
        from segpipe.jobs.versions import version_files

        out.update(version_files(v, stores))
    return out


@app.command()
def models(
    name: str | None = typer.Argument(None, help="A model name: its versions and promotion decisions."),
    architectures: bool = typer.Option(
        False, "--architectures", "--list", help="List the architectures a config's model.name can use instead."
    ),
    task: str | None = typer.Option(None, "--task", help="With --architectures: only those serving this task kind."),
    config_of: int | None = typer.Option(None, "--config", min=1, metavar="VERSION",
                                         help="With a model name: print that version's resolved training config."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List trained models and their versions (or, with --architectures, the model architectures)."""
    if config_of is not None:
        from segpipe.errors import ConfigError

        if name is None:
            raise ConfigError("--config VERSION shows one version's config: give the model name too")
        stores, _, _ = _open()
        print(stores.versions.get(name, config_of).config, end="")
        return
    if architectures:
        _architectures(task, as_json)
        return
    if task is not None:
        from segpipe.errors import ConfigError

        raise ConfigError("--task filters the architecture list: use it with --architectures")
    stores, _, _ = _open()
    if name is None:
        _model_names(stores, as_json)
    else:
        _one_model(stores, name, as_json)


def _architectures(task: str | None, as_json: bool) -> None:
    from segpipe.models import describe_models

    rows = [r for r in describe_models() if task is None or task in r[1]]
    if as_json:
        print(json.dumps([{"name": n, "tasks": list(t), "description": d} for n, t, d in rows], indent=1))
        return
    table = Table(title="model architectures")
    for col in ("name", "tasks", "description"):
        table.add_column(col)
    for name, tasks, description in rows:
        table.add_row(name, ", ".join(tasks), description)
    console.print(table)


def _model_names(stores: Any, as_json: bool) -> None:
    from itertools import groupby

    summaries = []
    for model, group in groupby(stores.versions.list(), key=lambda v: v.name):  # by name, newest first
        versions = list(group)
        production = next((v for v in versions if v.stage == "production"), None)
        last = stores.decisions.list(model, limit=1)
        summaries.append({
            "name": model, "task": versions[0].task, "versions": len(versions), "latest_version": versions[0].version,
            "production_version": production.version if production else None,
            "production_metrics": production.metrics if production else {},
            "last_decision": _decision_text(last[0]) if last else None,
        })
    if as_json:
        print(json.dumps(summaries, indent=1, default=str))
        return
    if not summaries:
        console.print("no model versions yet (a training job with a config `name` registers one; "
                      "`segpipe models --architectures` lists the architectures)")
        return
    table = Table(title="models")
    for col in ("name", "task", "versions", "production", "production metrics", "last decision"):
        table.add_column(col)
    for s in summaries:
        table.add_row(s["name"], s["task"], str(s["versions"]),
                      f"v{s['production_version']}" if s["production_version"] else "-",
                      _metrics_text(s["production_metrics"], s["task"]), s["last_decision"] or "-")
    console.print(table)


def _decision_text(decision: Any) -> str:
    by = "" if decision.source == "gate" else f" ({decision.source})"
    return f"v{decision.version} {decision.outcome}{by}"


def _one_model(stores: Any, name: str, as_json: bool) -> None:
    from segpipe.errors import NotFoundError
    from segpipe.retrain.job import decision_dict

    versions = stores.versions.list(name)
    if not versions:
        raise NotFoundError(f"model {name!r} has no versions (see `segpipe models`)")
    decisions = stores.decisions.list(name)
    if as_json:
        print(json.dumps({"name": name, "versions": [_version_dict(v, stores) for v in versions],
                          "decisions": [decision_dict(d) for d in decisions]}, indent=1, default=str))
        return
    table = Table(title=f"{name}: versions")
    for col in ("version", "stage", "created", "metrics", "data hash", "parent", "job"):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(f"v{v.version}", _stage(v.stage), _when(v.created_at), _metrics_text(v.metrics, v.task),
                      _short_hash(v.dataset_hash), f"v{v.parent_version}" if v.parent_version else "-",
                      (v.job_id or "-")[:12])
    console.print(table)
    if not decisions:
        console.print("no promotion decisions yet")
        return
    table = Table(title=f"{name}: decisions (newest first)")
    for col in ("when", "version", "vs", "outcome", "by", "reason"):
        table.add_column(col, overflow="fold")
    for d in decisions:
        table.add_row(_when(d.created_at), f"v{d.version}", f"v{d.previous_version}" if d.previous_version else "-",
                      _outcome(d.outcome), d.source, escape(d.reason))
    console.print(table)


@app.command()
def promote(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="The version to make production."),
    reason: str | None = typer.Option(None, "--reason", help="Why, in a few words: kept with the decision."),
) -> None:
    """Make a version the production one (the previous production version is archived). The decision
    records your operating-system user and the reason."""
    from segpipe.retrain.promotion import cli_actor, promote_by_hand, tell_label_studio

    stores, _, settings = _open()
    decision = promote_by_hand(stores, name, version, by=cli_actor(), reason=reason)
    console.print(f"{name}: version {version} is {_stage('production')} ({escape(decision.reason)})")
    for line in tell_label_studio(settings, stores, name):
        console.print(f"  {escape(line)}")


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    to: int | None = typer.Option(None, "--to", min=1, help="The version to go back to (default: the previous production one)."),
    reason: str | None = typer.Option(None, "--reason", help="Why, in a few words: kept with the decision."),
) -> None:
    """Put the previous production version (or --to VERSION) back into production. The decision
    records your operating-system user and the reason."""
    from segpipe.retrain.promotion import cli_actor, tell_label_studio
    from segpipe.retrain.promotion import rollback as do_rollback

    stores, _, settings = _open()
    decision = do_rollback(stores, name, to=to, by=cli_actor(), reason=reason)
    console.print(f"{name}: {escape(decision.reason)}; predict jobs using {name}@production now get v{decision.version}")
    for line in tell_label_studio(settings, stores, name):
        console.print(f"  {escape(line)}")


@app.command()
def retrain(
    name: str = typer.Argument(..., help="A model named in the schedule file."),
    schedule: Path | None = typer.Option(None, "--schedule", help=SCHEDULE_HELP),
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow the job until it ends."),
) -> None:
    """Queue a retraining of a scheduled model now, whatever its data (never a second one while one is queued or running)."""
    from segpipe.cli.service_cmds import _follow
    from segpipe.retrain.trigger import configured_schedule, queue_retrain

    stores, celery_app, settings = _open()
    entry = configured_schedule(settings, schedule).get(name)
    queued = queue_retrain(stores, celery_app, settings, entry, trigger="by hand (segpipe retrain)", submitted_by="cli")
    if queued.created:
        console.print(f"queued retrain job [bold]{queued.job.id}[/] for {name} on queue {queued.job.queue}")
    else:
        console.print(f"[yellow]{name} is already being retrained:[/] job {queued.job.id} is {queued.job.state}")
    if follow:
        _follow(stores, queued.job.id)
        _print_decision(stores, queued.job.id)


def _print_decision(stores: Any, job_id: str) -> None:
    progress = stores.jobs.get(job_id).progress or {}
    if "decision" in progress:
        console.print(f"{progress.get('model')}: {_outcome(progress['decision'])}: {escape(str(progress.get('reason')))}")


@app.command()
def schedule(
    path: Path | None = typer.Option(None, "--schedule", help=SCHEDULE_HELP),
    tick: bool = typer.Option(False, "--tick", help="Run one tick now (what beat does), then show the state."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show each scheduled model: timing, watched dataset, last check, pending signal, running retraining."""
    from dataclasses import asdict

    from segpipe.retrain.tick import tick as run_tick
    from segpipe.retrain.trigger import configured_schedule

    stores, celery_app, settings = _open()
    plan = configured_schedule(settings, path)
    results = {r.name: r for r in run_tick(stores, celery_app, settings, plan)} if tick else {}
    rows: list[dict[str, Any]] = []
    for entry in plan.models.values():
        slot = stores.retrain.get(entry.name)
        active = stores.retrain.active_job(entry.name)
        checked = slot.checked_at if slot else None
        rows.append({
            "name": entry.name, "timing": f"every {_duration(entry.every)}" if entry.every else f"cron {entry.cron}",
            "dataset": entry.dataset_name, "last_check": checked,
            "next_check": entry.next_check(checked) if checked else None,
            "signalled_at": slot.signalled_at if slot else None,
            # a pending signal is acted on by the first tick after the debounce window closes
            "signal_checked_from": slot.signalled_at + plan.debounce if slot and slot.signalled_at else None,
            "last_note": slot.note if slot else None,
            "active_job": active.id if active else None,
            "tick": asdict(results[entry.name]) if entry.name in results else None,
        })
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return
    table = Table(title=f"retraining schedule ({escape(plan.source)})")
    for col in ("model", "timing", "dataset", "last check", "next check", "signalled", "signal checked from",
                "retraining"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["timing"], r["dataset"], _when(r["last_check"]),
                      _when(r["next_check"]) if r["last_check"] else "next tick", _when(r["signalled_at"]),
                      _when(r["signal_checked_from"]), (r["active_job"] or "-")[:12])
    console.print(f"beat ticks every {settings.retrain_tick_seconds:g} s; a dataset signal waits "
                  f"{plan.debounce.total_seconds():g} s (debounce_seconds) before its check")
    console.print(table)
    for r in rows:  # below the table: these lines are long (job ids, hashes)
        note = r["tick"]["detail"] if r["tick"] else r["last_note"]
        console.print(f"{r['name']}: {escape(note or 'not checked yet')}", soft_wrap=True)


def _duration(delta: Any) -> str:
    """6h, 90s, 1h30m, 2d: how schedules are written."""
    seconds, parts = int(delta.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or f"{delta.total_seconds():g}s"
