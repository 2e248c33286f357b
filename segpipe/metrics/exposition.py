"""One scrape's text: the metrics of this process (or of all of a server's processes) plus the collectors
read at scrape time.

uvicorn's ``--workers N`` are N processes behind one port; a scrape reaches one of them. ``segpipe api``
therefore runs them in prometheus_client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a folder
where each process keeps its counters and histograms in files, and a scrape sums them all. The variable
must be set before prometheus_client is imported (`enable_multiprocess` does that, and empties the folder
of a previous run's files).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(folder: Path) -> None:
    """Use ``folder`` (emptied) for the metrics of this process and every process it starts."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)


def scrape(extra: Iterable[object] = ()) -> bytes:
    """The exposition text: this process's (or, in multiprocess mode, all processes') metrics, then ``extra``
    collectors', read now."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    now = CollectorRegistry(auto_describe=False)
    for collector in extra:
        now.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry) + generate_latest(now)
