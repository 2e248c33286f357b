"""Log lines as text (default) or, with ``SEGPIPE_LOG_FORMAT=json``, one JSON object per line for a log
collector (Loki, Elasticsearch, CloudWatch): ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``process``, ``job_id`` while a worker runs a job (`job_context`), and ``exception`` with the traceback.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_current_job: ContextVar[str | None] = ContextVar("segpipe_job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log records made inside the block (in this thread) carry ``job_id``."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring); ``extra={"job_id": …}`` also sets the job id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        job_id = getattr(record, "job_id", None) or _current_job.get()
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, fmt: str) -> None:
    """The root logger writes ``fmt`` ("text" or "json") lines to stderr at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def uvicorn_log_config(fmt: str) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``fmt``: None keeps uvicorn's own text format."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "segpipe.logs.JsonFormatter"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": os.environ.get("SEGPIPE_LOG_LEVEL", "INFO").upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }
