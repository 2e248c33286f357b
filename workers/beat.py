"""What Celery beat sends besides the reconciler: the retraining schedule tick.

The tick runs on a worker (queue ``cpu``) every ``SEGPIPE_RETRAIN_TICK_SECONDS``; it reads
``SEGPIPE_SCHEDULE`` (default ``configs/schedule.yaml``) afresh each time, so editing the schedule
needs no restart. Each tick message expires after one period: when the workers are busy with long
jobs, stale ticks are dropped instead of piling up (the next one checks everything anyway).
Several beat processes may run; the tick's compare-and-set and the per-model lock make that safe.
"""

from __future__ import annotations

from typing import Any

from segpipe.settings import Settings

RETRAIN_TICK = "segpipe.retrain_tick"


def retrain_beat_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """``beat_schedule`` entries for the retraining tick (none when no schedule file exists)."""
    if not settings.schedule.is_file():
        return {}
    period = settings.retrain_tick_seconds
    return {
        "retrain-tick": {
            "task": RETRAIN_TICK,
            "schedule": period,
            "options": {"queue": "cpu", "expires": period},
        }
    }
