"""Which jobs have a message in the broker: waiting in a queue, or delivered and not yet acknowledged.

The reconciler compares this with the store's queued jobs to find the ones whose message was lost
(a Redis restarted without persistence loses every waiting message). Read-only; understands the two
transports segpipe configures: Redis (queue lists per priority step, the ``unacked`` hash) and
kombu's SQLAlchemy transport (the ``kombu_message`` table). For any other transport it answers None
("cannot tell") and nothing is re-published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from celery import Celery

log = logging.getLogger("segpipe.service")


def job_ids_in_broker(celery_app: Celery, queues: Iterable[str]) -> set[str] | None:
    """Ids of the jobs (= task ids) whose message is in one of `queues` or delivered unacked; None
    when the transport cannot be inspected."""
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        driver = conn.transport.driver_type
        if driver == "redis":
            return _redis_ids(channel, list(queues))
        if driver == "sqlalchemy":
            return _sqla_ids(channel, list(queues))
    log.warning("broker transport %r cannot be inspected; lost messages are not re-published", driver)
    return None


def _task_id(payload: Any) -> str | None:  # a message as the transport stores it
    try:
        message = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
        if isinstance(message, list):  # the unacked hash: [message, exchange, routing key]
            message = message[0]
        task_id = message.get("headers", {}).get("id") or message.get("properties", {}).get("correlation_id")
    except (ValueError, AttributeError, IndexError, TypeError):
        return None
    return str(task_id) if task_id else None


def _redis_ids(channel: Any, queues: list[str]) -> set[str]:  # kombu's channel
    client = channel.client
    keys = {channel._q_for_pri(queue, pri) for queue in queues for pri in channel.priority_steps}  # noqa: SLF001 - kombu has no public name for its priority queues
    found: set[str] = set()
    for key in keys:
        found.update(filter(None, (_task_id(raw) for raw in client.lrange(key, 0, -1))))
    found.update(filter(None, (_task_id(raw) for raw in client.hvals(channel.unacked_key))))
    return found


def _sqla_ids(channel: Any, queues: list[str]) -> set[str]:  # kombu's channel
    found: set[str] = set()
    for queue in queues:
        # visible: waiting; not visible: delivered, not yet acknowledged (deleted on ack)
        found.update(filter(None, (_task_id(m.payload) for m in channel._query_all(queue))))  # noqa: SLF001 - kombu's only listing
    return found
