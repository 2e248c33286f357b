"""A stand-in for one beat process, for tests: run one schedule tick with a fixed "now".

Started with multiprocessing's spawn context, so it shares nothing with the test process but the
database, the broker and the files: its own interpreter, engine and connections, as a second beat
host would have.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any


def tick_once(settings: Any, schedule_path: str, now_iso: str, barrier: Any, results: Any) -> None:
    """Open the stores with a clock stuck at ``now_iso``, wait at ``barrier``, tick, put the results."""
    from segpipe.retrain.schedule import load_schedule
    from segpipe.retrain.tick import tick
    from segpipe.stores import Stores
    from workers.celery_app import create_app

    now = datetime.fromisoformat(now_iso)
    stores = Stores.open(settings.db_url, settings.artifacts, now=lambda: now)
    celery_app = create_app(settings)
    try:
        schedule = load_schedule(Path(schedule_path))
        barrier.wait(timeout=120)
        results.put([asdict(r) for r in tick(stores, celery_app, settings, schedule)])
    except BaseException as e:  # noqa: BLE001 - reported to the test, which fails with it
        results.put([{"name": "?", "outcome": "error", "detail": f"{type(e).__name__}: {e}"}])
    finally:
        celery_app.close()
        stores.close()
