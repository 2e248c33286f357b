"""Metrics read when Prometheus scrapes: the store's jobs by kind and state, the broker's queue depth, a
process's memory, and build information."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import resource
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

log = logging.getLogger("segpipe.metrics")


def segpipe_version() -> str:
    try:
        return importlib.metadata.version("segpipe")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class BuildInfo(Collector):
    """``segpipe_build_info{version, python, component} 1``: which release answers, and in what role."""

    def __init__(self, component: str) -> None:
        self.component = component

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("segpipe_build_info", "segpipe's version, Python's, and the process's role",
                                 labels=["version", "python", "component"])
        info.add_metric([segpipe_version(), platform.python_version(), self.component], 1)
        yield info


class JobStates(Collector):
    """``segpipe_jobs{kind, state}``: jobs in the SQL store (the truth about jobs), counted at each scrape."""

    def __init__(self, stores: Any) -> None:
        self.stores = stores

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from segpipe.stores.models import JOB_STATES, Job

        family = GaugeMetricFamily("segpipe_jobs", "Jobs in the store by kind and state", labels=["kind", "state"])
        try:
            with self.stores.db.read() as session:
                rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)).all()
        except Exception:  # a scrape must answer; the store's health is /health's job
            log.exception("metrics: could not count jobs in the store")
            return
        counts = {(kind, state): int(n) for kind, state, n in rows}
        for kind in sorted({kind for kind, _ in counts}):
            for state in JOB_STATES:  # every state of a kind present, zeros included, so rates and sums work
                family.add_metric([kind, state], counts.get((kind, state), 0))
        yield family


class QueueDepth(Collector):
    """``segpipe_queue_depth{queue}``: messages waiting in each broker queue (Redis, or the SQLite broker)."""

    def __init__(self, celery_app: Any, queues: tuple[str, ...]) -> None:
        self.celery = celery_app
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("segpipe_queue_depth", "Messages waiting in a broker queue", labels=["queue"])
        try:
            with self.celery.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1)
                channel = connection.default_channel
                for queue in self.queues:
                    family.add_metric([queue], _waiting(channel, queue))
        except Exception:  # a scrape must answer even when the broker does not
            log.exception("metrics: could not read the broker's queue depths")
            return
        yield family


def _waiting(channel: Any, queue: str) -> int:
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # noqa: BLE001 - a queue nobody declared yet holds nothing
        return 0


class ProcessMemory(Collector):
    """``segpipe_worker_peak_resident_memory_bytes``: the most memory this process has held (Linux ru_maxrss).

    ``process_resident_memory_bytes`` (the client's process collector) says what it holds now."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield GaugeMetricFamily("segpipe_worker_peak_resident_memory_bytes",
                                "The largest resident memory this worker process has had", value=peak_kib * 1024)
