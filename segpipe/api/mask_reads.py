"""The masks endpoint's read path: one image's stored instances in ONE statement, and its JSON encoded without
re-parsing the masks. This is the API's hot path (annotation tools fetch image after image).

`PredictionStore.for_image` answers the same question, but through an ORM session in a
transaction: on PostgreSQL that is four round trips (pool ping, BEGIN, SELECT, COMMIT) and about
1 ms of client CPU. Here a single statement runs on a Core connection in autocommit mode (a single
statement is a consistent snapshot by itself) from a pool of its own that does not ping before
each use (the ping was a fifth of the endpoint's CPU): a connection the server dropped fails the
statement, which invalidates the pool, and the read is retried once on a fresh connection. The
statement returns the image's done-marker together with its rows, so "processed, nothing found"
and "never processed" need no second query:

    chosen marker (prediction_images, one indexed lookup: the given job, or the latest succeeded job)
    LEFT JOIN predictions ON (job_id, image_key)   — the unique key's index, already in instance order

``bbox`` and ``rle`` come back as JSON text and go into the response as is (``orjson.Fragment``):
the database already holds them as JSON, so parsing and re-encoding them would only cost time.
(This belongs in `PredictionStore`; it lives here until the store offers a single-statement read.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, Row, Select, Text, bindparam, cast, select
from sqlalchemy.exc import DBAPIError

from segpipe.stores.db import Store, make_engine
from segpipe.stores.models import Job, Prediction, PredictionImage
from segpipe.stores.predictions import PredictionRow


@dataclass(frozen=True, slots=True)
class RawInstance:
    """One stored instance with ``bbox`` / ``rle`` still as JSON text (``"null"`` or None when absent)."""

    instance: int
    category_id: int | None
    category_name: str | None
    score: float | None
    bbox_json: str | None
    rle_json: str | None
    height: int
    width: int


@dataclass(frozen=True, slots=True)
class ImageRead:
    """What one job stored for one image: ``instances`` ordered by instance number, [] if it found none."""

    image_key: str
    job_id: str
    height: int | None
    width: int | None
    instances: list[RawInstance]

    def to_json(self) -> bytes:
        """The `segpipe.api.schemas.ImageMasks` JSON document."""
        return orjson.dumps(
            {
                "image_key": self.image_key,
                "job_id": self.job_id,
                "height": self.height,
                "width": self.width,
                "instances": [
                    {
                        "instance": i.instance,
                        "category_id": i.category_id,
                        "category_name": i.category_name,
                        "score": i.score,
                        "bbox": _fragment(i.bbox_json),
                        "rle": _fragment(i.rle_json),
                    }
                    for i in self.instances
                ],
            }
        )

    def rows(self) -> list[PredictionRow]:
        """As store rows (masks parsed), for the formats that decode masks (PNG, polygons)."""
        return [
            PredictionRow(
                self.job_id,
                self.image_key,
                i.instance,
                i.category_id,
                i.category_name,
                i.score,
                _parse(i.bbox_json),
                _parse(i.rle_json),
                i.height,
                i.width,
            )
            for i in self.instances
        ]


def _fragment(text: str | None) -> orjson.Fragment | None:
    return orjson.Fragment(text) if text is not None else None


def _parse(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def _statement(by_job: bool) -> Select[Any]:
    marker = select(
        PredictionImage.job_id, PredictionImage.image_key, PredictionImage.height, PredictionImage.width
    ).where(PredictionImage.image_key == bindparam("image_key"))
    if by_job:
        # An explicit job is answered whatever its state (a running job's images so far).
        marker = marker.where(PredictionImage.job_id == bindparam("job_id"))
    else:
        marker = (
            marker.join(Job, Job.id == PredictionImage.job_id)
            .where(Job.state == "succeeded")
            .order_by(Job.finished_at.desc(), Job.id.desc())
            .limit(1)
        )
    chosen = marker.subquery("chosen")
    return (
        select(
            chosen.c.job_id,
            chosen.c.height,
            chosen.c.width,
            Prediction.instance,
            Prediction.category_id,
            Prediction.category_name,
            Prediction.score,
            cast(Prediction.bbox, Text),
            cast(Prediction.rle, Text),
            Prediction.height,
            Prediction.width,
        )
        .select_from(chosen)
        .outerjoin(Prediction, (Prediction.job_id == chosen.c.job_id) & (Prediction.image_key == chosen.c.image_key))
        .order_by(Prediction.instance)
    )


class ImageMaskReader:
    """Reads one image's stored instances (see the module docstring). Thread-safe; `close` at shutdown.

    ``pool_size`` should match the number of threads that read at once: a smaller pool would open
    and discard a connection (a PostgreSQL backend process) per request under load.
    """

    def __init__(self, store: Store, pool_size: int = 16) -> None:
        self._engine: Engine
        if store.dialect == "postgresql":
            self._engine = make_engine(
                store.engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=pool_size, max_overflow=4
            )
            self._owned = True
        else:
            # SQLite: the store's own engine; its transactions are local calls that cost nothing.
            self._engine, self._owned = store.engine, False
        self._by_job = _statement(by_job=True)
        self._latest = _statement(by_job=False)

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()

    def _fetch(self, statement: Select[Any], params: dict[str, str]) -> list[Row[Any]]:
        try:
            return self._execute(statement, params)
        except DBAPIError as exc:
            # The server closed a pooled connection (restart, idle timeout): SQLAlchemy has now
            # invalidated the pool, and the read is safe to repeat once on a fresh connection.
            if not exc.connection_invalidated:
                raise
            return self._execute(statement, params)

    def _execute(self, statement: Select[Any], params: dict[str, str]) -> list[Row[Any]]:
        with self._engine.connect() as conn:
            return list(conn.execute(statement, params).all())

    def read(self, image_key: str, job_id: str | None = None) -> ImageRead | None:
        """The image's instances stored by ``job_id``, or by the latest finished succeeded job that has the
        image; None when no such job processed it."""
        if job_id is None:
            statement, params = self._latest, {"image_key": image_key}
        else:
            statement, params = self._by_job, {"image_key": image_key, "job_id": job_id}
        rows = [tuple(row) for row in self._fetch(statement, params)]
        if not rows:
            return None
        first = rows[0]
        instances = [RawInstance(*row[3:]) for row in rows if row[3] is not None]  # instance NULL: found none
        return ImageRead(image_key, first[0], first[1], first[2], instances)
