"""The Celery app: broker from settings, queues ``gpu`` and ``cpu``, settings for long GPU jobs.

- ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only after its job ran, so a
  worker that dies mid-job leaves it to be redelivered (Redis: after ``visibility_timeout``).
- prefetch 1: a worker holds no second job while one runs.
- results are not stored: the SQL store is the truth about a job (``task_ignore_result``).
- the embedded default broker is SQLite through kombu's SQLAlchemy transport (no server to run).
  It does not redeliver a message whose worker died; the reconciler covers that (``workers.tasks``).
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from segpipe.job_kinds import QUEUES
from segpipe.settings import Settings, get_settings
from workers.beat import RETRAIN_TICK, retrain_beat_entries  # noqa: F401 - RETRAIN_TICK re-exported beside RUN_JOB

RUN_JOB = "segpipe.run_job"
RECONCILE = "segpipe.reconcile"


def _transport_options(s: Settings) -> dict[str, float]:
    """Redis redelivers unacked messages after ``visibility_timeout``. The SQLAlchemy transport hands
    its transport options to ``create_engine``, which refuses unknown keys: it gets none."""
    if s.broker.startswith("redis"):
        return {"visibility_timeout": s.visibility_timeout}
    return {}


def create_app(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    if s.broker.startswith("sqla+sqlite:///"):
        s.home_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("segpipe", broker=s.broker, include=["workers.tasks"])
    app.conf.update(
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="cpu",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(s),
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # flower
        timezone="UTC",
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": 30.0, "options": {"queue": "cpu"}},
            **retrain_beat_entries(s),
        },
    )
    return app


app = create_app()
