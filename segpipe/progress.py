"""Progress of long work for people: rich bars on a terminal, plain lines everywhere else.

A log file, ``docker logs``, a CI page or ``nohup`` cannot show a bar, and printed nothing for minutes.
There, `PlainProgress` writes one self-contained line at a steady interval (``SEGPIPE_PROGRESS_INTERVAL``
seconds, default 10) plus one at the start and one at the end::

    2026-12-02 06:30:01 predict 12/40 (30%) | 4.1 img/s | ETA 7s

`progress(...)` picks the kind for the stream. Both kinds take the same calls: ``update(done, **fields)``
and ``close(**fields)``; ``fields`` are shown as ``key value`` after the count (floats with 4 digits).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TextIO

DEFAULT_INTERVAL_S = 10.0


def interval_s() -> float:
    """Seconds between plain progress lines (``SEGPIPE_PROGRESS_INTERVAL``, default 10)."""
    try:
        value = float(os.environ.get("SEGPIPE_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def format_duration(seconds: float | None) -> str:
    """``2h05m``, ``3m20s``, ``12s``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


def timestamp() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")  # local time, as a log line reads


class Reporter(Protocol):
    def update(self, done: int, *, force: bool = False, **fields: Any) -> None: ...
    def close(self, **fields: Any) -> None: ...


class PlainProgress:
    """Plain, timestamped progress lines at most every ``interval`` seconds (and at start and close).

    Rate and ETA come from the units done since the first update and the time they took."""

    def __init__(self, label: str, total: int | None, unit: str = "img", stream: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stdout
        self.interval = interval_s() if interval is None else interval
        self.clock = clock
        self._start = clock()
        self._last_line = self._start
        self._done = 0
        self.write(f"{label} started" + (f": {total} to do" if total is not None else ""))

    def write(self, text: str) -> None:
        self.stream.write(f"{timestamp()} {text}\n")
        self.stream.flush()

    def rate(self) -> float | None:
        elapsed = self.clock() - self._start
        return self._done / elapsed if elapsed > 0 and self._done else None

    def update(self, done: int, *, force: bool = False, **fields: Any) -> None:
        self._done = done
        now = self.clock()
        if force or now - self._last_line >= self.interval:
            self._last_line = now
            self.write(self._line(fields))

    def _line(self, fields: dict[str, Any]) -> str:
        count = f"{self._done}/{self.total}" if self.total else f"{self._done}"
        if self.total:
            count += f" ({100 * self._done / self.total:.0f}%)"
        rate = self.rate()
        eta = (self.total - self._done) / rate if rate and self.total else None
        extra = format_fields(fields)
        return (f"{self.label} {count}" + (f" {extra}" if extra else "")
                + (f" | {rate:.1f} {self.unit}/s" if rate else "") + (f" | ETA {format_duration(eta)}" if self.total else ""))

    def close(self, **fields: Any) -> None:
        extra = format_fields(fields)
        took = format_duration(self.clock() - self._start)
        count = f"{self._done}/{self.total}" if self.total else str(self._done)
        self.write(f"{self.label} done: {count} in {took}" + (f" ({extra})" if extra else ""))


class RichProgress:
    """A rich bar with the same calls as `PlainProgress`."""

    def __init__(self, label: str, total: int | None, unit: str = "img", console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                             TimeRemainingColumn(), console=console)
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, info="")

    def update(self, done: int, *, force: bool = False, **fields: Any) -> None:
        self._bar.update(self._task, completed=done, info=format_fields(fields))

    def close(self, **fields: Any) -> None:
        self._bar.update(self._task, info=format_fields(fields))
        self._bar.stop()


def progress(label: str, total: int | None, unit: str = "img", stream: TextIO | None = None,
             console: Any = None) -> Reporter:
    """A rich bar when ``stream`` (stdout by default) is a terminal, plain lines otherwise."""
    if is_terminal(stream):
        return RichProgress(label, total, unit, console=console)
    return PlainProgress(label, total, unit, stream=stream)
