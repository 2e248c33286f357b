"""The API process's start-up time and resident memory, before and after it stopped loading torch.

    OMP_NUM_THREADS=1 python bench/api_footprint.py [--before /work/main] [--rounds 3]

Each round starts a real API server (uvicorn on the app factory, as ``tests/live_server.py`` does) from each
checkout, ``--before`` (a checkout of the code to compare with; default /work/main) and this one, alternating
which goes first, over fresh stores holding a model version and a finished predict job
(`tests.api.footprint`). Measured per server:

- start-up: from the process's start to ``/health`` answering (polled every 20 ms);
- the time the three requests below take, first time (where a lazily imported torch was paid for);
- resident memory (VmRSS, /proc/<pid>/status) when ``/health`` first answers and after serving a train
  submit, a COCO export download and a Label Studio predict from stored predictions;
- whether torch's shared objects were mapped by then.

Prints a table of medians over the rounds, the after/before ratios and one JSON line. On a shared machine
compare the two sides of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.api.footprint import heavy_files_mapped, prepare, resident_mib, serve_requests
from tests.support.live_server import live_api_process
from tests.support.paths import REPO


def measure(repo: Path, scratch: Path) -> dict[str, Any]:
    """One server from ``repo``: start-up seconds, VmRSS at start and after the requests, torch mapped."""
    served = prepare(scratch)
    started = time.perf_counter()
    with live_api_process(served.env, scratch / "api.log", repo=repo, poll=0.02) as (base, proc):
        startup_s = time.perf_counter() - started
        rss_start = resident_mib(proc.pid)
        started = time.perf_counter()
        serve_requests(base, served)
        requests_s = time.perf_counter() - started
        rss_served = resident_mib(proc.pid)
        torch_mapped = any("/torch/" in path for path in heavy_files_mapped(proc.pid))
    return {"startup_s": startup_s, "requests_s": requests_s, "rss_start_mib": rss_start, "rss_served_mib": rss_served,
            "torch_loaded": torch_mapped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=Path("/work/main"), help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "after": REPO}
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="segpipe-api-footprint-") as tmp:
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                results[side].append(measure(sides[side], Path(tmp) / f"{side}-{r}"))
    keys = ("startup_s", "requests_s", "rss_start_mib", "rss_served_mib")
    med = {side: {k: statistics.median(run[k] for run in runs) for k in keys} for side, runs in results.items()}
    loaded = {side: sorted({run["torch_loaded"] for run in runs}) for side, runs in results.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.2f}, {args.rounds} rounds")
    print(f"before: {sides['before']}  after: {sides['after']}")
    print(f"{'median':<34}{'before':>10}{'after':>10}{'after/before':>14}")
    labels = {"startup_s": "start-up to /health (s)", "requests_s": "the three requests, first time (s)",
              "rss_start_mib": "VmRSS at start (MiB)",
              "rss_served_mib": "VmRSS after the requests (MiB)"}
    for k in keys:
        print(f"{labels[k]:<34}{med['before'][k]:>10.2f}{med['after'][k]:>10.2f}{med['after'][k] / med['before'][k]:>14.2f}")
    print(f"{'torch loaded after the requests':<34}{loaded['before']!s:>10}{loaded['after']!s:>10}")
    print(json.dumps({"rounds": args.rounds, "median": med, "torch_loaded": loaded, "runs": results}))


if __name__ == "__main__":
    main()
