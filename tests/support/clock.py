"""A clock the tests set: stores and schedules take ``now=`` and tests move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock (`JobStore`, `Stores.open(now=)`, a retraining tick's "now"): it stands at
    ``start`` (default `START`) and moves only by `advance`."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move on by ``seconds`` plus any other `timedelta` fields (``hours=1``); the new time."""
        self.now += timedelta(seconds=seconds, **delta)
        return self.now
