"""``segpipe job --follow``: watch a queued job until it ends, from its progress in the store.

On a terminal a rich bar; elsewhere (CI logs, ``docker logs``, ``nohup``) one plain line per state
change and every ``SEGPIPE_PROGRESS_INTERVAL`` seconds while it runs::

    2026-12-02 06:30:01 job 1f3a… running train epoch 2/12 step 5/8 loss 0.8123 | 4.1 img/s | ETA 1m20s
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from segpipe.progress import format_duration, interval_s, is_terminal, timestamp

STATE_COLOURS = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


def progress_line(state: str, p: dict[str, Any], kind: str = "predict") -> str:
    """One line for a job's progress dict (train: epoch/step/loss/rate/ETA; predict, evaluate: images)."""
    done = p.get("phase") == "done"  # progress dicts are merged: a finished job still holds its last speed
    rate, eta = (None, None) if done else (p.get("images_per_s"), p.get("eta_s"))
    speed = (f" | {rate:.1f} img/s" if rate else "") + (f" | ETA {format_duration(eta)}" if eta is not None else "")
    if p.get("images_total"):
        return f"{state} {kind} {p.get('images_done', 0)}/{p['images_total']} images{speed}"
    if p.get("epochs"):
        text = f"{state} {p.get('phase', 'train')} epoch {p.get('epoch', 0)}/{p['epochs']}"
        if p.get("steps") and not done:
            text += f" step {p['step']}/{p['steps']}" if p.get("step") else " done"  # step 0: the epoch ended
        if isinstance(p.get("loss"), (int, float)) and not done:
            text += f" loss {p['loss']:.4f}"
        metrics = {k: v for k, v in (p.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not k.startswith(("num_", "val_"))}
        shown = " ".join(f"{k} {metrics[k]:.3f}" for k in sorted(metrics, key=_headline)[:3])
        return text + (f" | {shown}" if shown else "") + speed
    return f"{state} {p.get('phase', '')}".strip()


_HEADLINE = ("segm_AP", "bbox_AP", "segm_AP50", "bbox_AP50", "miou", "mdice", "iou", "dice", "accuracy")


def _headline(key: str) -> tuple[int, str]:
    """The metrics people look at first (mask AP before box AP, mIoU, accuracy), then by name."""
    return (_HEADLINE.index(key) if key in _HEADLINE else len(_HEADLINE), key)


def follow(stores: Any, job_id: str, console: Console, poll_s: float = 1.0, stream: TextIO | None = None) -> str:
    """Watch `job_id` until it is in a terminal state; returns that state."""
    stream = stream or sys.stdout
    state = _plain(stores, job_id, poll_s, stream) if not is_terminal(stream) else _bar(stores, job_id, poll_s, console)
    j = stores.jobs.get(job_id)
    if is_terminal(stream):
        colour = STATE_COLOURS.get(state, "white")
        console.print(f"job {job_id} [{colour}]{state}[/]" + (f": {escape(j.error)}" if j.error else ""))
    else:
        stream.write(f"{timestamp()} job {job_id} {state}" + (f": {j.error}" if j.error else "") + "\n")
        stream.flush()
    return state


def _plain(stores: Any, job_id: str, poll_s: float, stream: TextIO) -> str:
    from segpipe.stores import TERMINAL_STATES

    every = interval_s()
    last_line, last_state, last_phase = 0.0, None, None
    while True:
        j = stores.jobs.get(job_id)
        p = j.progress or {}
        now = time.monotonic()
        changed = j.state != last_state or p.get("phase") != last_phase
        if j.state in TERMINAL_STATES:
            if p:
                stream.write(f"{timestamp()} job {job_id} {progress_line(j.state, p, j.kind)}\n")
            return j.state
        if changed or now - last_line >= every:
            stream.write(f"{timestamp()} job {job_id} {progress_line(j.state, p, j.kind)}\n")
            stream.flush()
            last_line, last_state, last_phase = now, j.state, p.get("phase")
        time.sleep(poll_s)


def _bar(stores: Any, job_id: str, poll_s: float, console: Console) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from segpipe.stores import TERMINAL_STATES

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(job_id[:8], total=None, info="queued")
        while True:
            j = stores.jobs.get(job_id)
            p = j.progress or {}
            info = escape(progress_line(j.state, p, j.kind))
            if p.get("images_total"):
                bar.update(task, total=p["images_total"], completed=p.get("images_done", 0), info=info)
            elif p.get("epochs"):
                steps = max(int(p.get("steps") or 1), 1)
                done = (max(int(p.get("epoch", 1)) - 1, 0)) * steps + int(p.get("step") or 0)
                bar.update(task, total=p["epochs"] * steps, completed=min(done, p["epochs"] * steps), info=info)
            else:
                bar.update(task, info=info)
            if j.state in TERMINAL_STATES:
                if j.state == "succeeded" and bar.tasks[0].total:
                    bar.update(task, completed=bar.tasks[0].total)
                return j.state
            time.sleep(poll_s)
