"""What the API's request metrics cost per request, and what one scrape of ``/metrics`` costs.

    python bench/request_metrics.py [--quick]

1. Middleware: an ASGI app that answers at once, called directly (no sockets) with and without
   `segpipe.api.request_metrics.RequestMetricsMiddleware` around it, interleaved A B A B after a warm-up;
   medians over the rounds of the time per request, and the difference (the middleware's own cost).
2. Scrape: ``GET /metrics`` of the real app (FastAPI's TestClient) over a SQLite store holding N jobs
   across kinds and states; the median time of a scrape (job counts grouped in SQL, queue depth read from
   the embedded SQLite broker).

Prints a table and one JSON line. Shared, noisy machines: compare the two sides of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _noop_send(message: dict[str, Any]) -> None:
    pass


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _round(app: Any, n: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/x"}
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), _receive, _noop_send)
    return (time.perf_counter() - start) / n


def middleware_cost(requests: int, rounds: int) -> dict[str, float]:
    from segpipe.api.request_metrics import RequestMetricsMiddleware

    wrapped = RequestMetricsMiddleware(_bare)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_round(_bare, requests // 10))
    loop.run_until_complete(_round(wrapped, requests // 10))
    bare, with_metrics = [], []
    for _ in range(rounds):
        bare.append(loop.run_until_complete(_round(_bare, requests)))
        with_metrics.append(loop.run_until_complete(_round(wrapped, requests)))
    loop.close()
    b, w = statistics.median(bare), statistics.median(with_metrics)
    return {"bare_us": b * 1e6, "with_metrics_us": w * 1e6, "cost_us": (w - b) * 1e6}


def scrape_time(jobs: int, scrapes: int) -> float:
    from fastapi.testclient import TestClient

    from segpipe.api.app import create_app
    from segpipe.settings import Settings
    from segpipe.stores import Stores
    from segpipe.stores.models import JOB_STATES, Job, utcnow
    from workers.celery_app import create_app as create_celery

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(home=root / "home", database_url=f"sqlite:///{root / 'db.sqlite'}",
                            broker_url=f"sqla+sqlite:///{root / 'broker.db'}", artifact_root=root / "artifacts",
                            data_roots=[root], tokens={"adm": "admin"}, metrics_token="m")
        stores = Stores.from_settings(settings)
        now = utcnow()
        kinds = ("train", "predict", "evaluate", "predict-shard")
        with stores.db.write() as session:
            session.add_all(Job(kind=kinds[i % 4], config="", state=JOB_STATES[i % 5], queue="gpu", created_at=now,
                                updated_at=now) for i in range(jobs))
        with TestClient(create_app(settings, stores, create_celery(settings))) as client:
            headers = {"Authorization": "Bearer m"}
            client.get("/metrics", headers=headers)
            times = []
            for _ in range(scrapes):
                start = time.perf_counter()
                assert client.get("/metrics", headers=headers).status_code == 200
                times.append(time.perf_counter() - start)
        stores.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests, rounds = (2_000, 3) if args.quick else (20_000, 7)
    jobs, scrapes = (1_000, 5) if args.quick else (100_000, 15)
    cost = middleware_cost(requests, rounds)
    scrape_s = scrape_time(jobs, scrapes)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'per request, no middleware':<40}{cost['bare_us']:>10.2f} µs")
    print(f"{'per request, with request metrics':<40}{cost['with_metrics_us']:>10.2f} µs")
    print(f"{'request metrics cost':<40}{cost['cost_us']:>10.2f} µs")
    print(f"{f'GET /metrics, {jobs:,} jobs in SQLite':<40}{scrape_s * 1e3:>10.1f} ms")
    print(json.dumps({"requests_per_round": requests, "rounds": rounds, **{k: round(v, 3) for k, v in cost.items()},
                      "jobs": jobs, "scrape_ms": round(scrape_s * 1e3, 2)}))


if __name__ == "__main__":
    main()
