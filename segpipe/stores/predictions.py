"""Predicted instances in SQL, written exactly once per (job, image, instance) and read per image or streamed per job.

Idempotent writes: `write_image` stores one image's instances and a `PredictionImage` marker in one
transaction, both with ``INSERT … ON CONFLICT DO NOTHING``. If the marker already exists the image
was done before, and nothing else is written. We chose this over delete-then-insert because the
first write must win: a re-run (a redelivered job, a worker that lost its lease mid-image) may
produce slightly different numbers (non-deterministic GPU kernels), and rows already served or
exported must not change under the reader; nor may a stale worker delete what the new owner wrote.
Two writers racing on one image are safe: PostgreSQL makes the second INSERT wait on the unique
index and then skip, SQLite serializes write transactions.

Rows hold compressed COCO RLE with ``counts`` as str, ``bbox`` as ``[x, y, w, h]`` pixels and the
dataset's own ``category_id`` (already mapped back from contiguous labels).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.dialects import postgresql, sqlite

from segpipe.masks.rows import PredictionRow  # the one row type of every export (re-exported here)
from segpipe.stores.db import Store
from segpipe.stores.models import Job, Prediction, PredictionFailure, PredictionImage, utcnow

ROW_FIELDS = ("instance", "category_id", "category_name", "score", "bbox", "rle", "height", "width")
_COLUMNS = (
    Prediction.job_id,
    Prediction.image_key,
    Prediction.instance,
    Prediction.category_id,
    Prediction.category_name,
    Prediction.score,
    Prediction.bbox,
    Prediction.rle,
    Prediction.height,
    Prediction.width,
)


class PredictedImage(NamedTuple):
    """One image of a predict job on its way into the store: its instance rows and what ranks it for
    "what to label next" (`segpipe.ranking`): the model's uncertainty and the image's dHash (hex)."""

    key: str
    rows: Sequence[Mapping[str, Any]]
    height: int | None = None
    width: int | None = None
    uncertainty: float | None = None
    fingerprint: str | None = None


class RankedImage(NamedTuple):
    key: str
    uncertainty: float
    fingerprint: str | None


class PredictionStore:
    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now
        inserts: dict[str, Callable[[Any], postgresql.Insert | sqlite.Insert]] = {
            "postgresql": postgresql.insert,
            "sqlite": sqlite.insert,
        }
        if store.dialect not in inserts:
            raise ValueError(f"PredictionStore supports {sorted(inserts)}, not {store.dialect}")
        self._insert = inserts[store.dialect]

    def write_image(
        self,
        job_id: str,
        image_key: str,
        rows: Sequence[Mapping[str, Any]],
        height: int | None = None,
        width: int | None = None,
        uncertainty: float | None = None,
        fingerprint: str | None = None,
    ) -> bool:
        """Store all instances of one image for ``job_id`` in one transaction; False if it was stored before.

        Each row has the keys of `ROW_FIELDS` (``instance`` defaults to the row's position;
        ``height``/``width`` default to the arguments). Numpy scalars and RLE ``counts`` given as
        bytes (as pycocotools returns them) are converted. An image with no rows is still marked done.
        """
        image = PredictedImage(image_key, rows, height, width, uncertainty, fingerprint)
        return self.write_images(job_id, [image]) == 1

    def write_images(self, job_id: str, images: Sequence[PredictedImage | tuple[Any, ...]]) -> int:
        """`write_image` for several images (`PredictedImage`, or plain ``(key, rows, height, width)``
        tuples) in one transaction (a predict job's batch: one commit and one lock instead of one per
        image); returns how many were new. Each image stays all-or-nothing, and one stored before is
        skipped whole."""
        if not images:
            return 0
        now = self.now()
        markers: list[dict[str, Any]] = []
        rows_of: dict[str, list[dict[str, Any]]] = {}
        for image in (PredictedImage(*item) for item in images):
            image_key, rows, height, width = image.key, image.rows, image.height, image.width
            values = [_row_values(job_id, image_key, i, row, height, width) for i, row in enumerate(rows)]
            instances = [v["instance"] for v in values]
            if len(set(instances)) != len(instances):
                raise ValueError(f"job {job_id}, image {image_key!r}: instance numbers repeat: {instances}")
            if values:
                height, width = values[0]["height"], values[0]["width"]
            uncertainty = None if image.uncertainty is None else float(image.uncertainty)
            markers.append({"job_id": job_id, "image_key": image_key, "instances": len(values), "height": height,
                                "width": width, "created_at": now, "uncertainty": uncertainty, "fingerprint": image.fingerprint})
            rows_of[image_key] = values
        with self.store.write() as session:
            mark = self._insert(PredictionImage).values(markers).on_conflict_do_nothing()
            # ON CONFLICT DO NOTHING returns no row for an image done before: only the new ones get rows
            new = set(session.scalars(mark.returning(PredictionImage.image_key)))
            values = [v for key in new for v in rows_of[key]]
            if values:
                # The unique key backs up the marker: even a write that bypassed it cannot duplicate rows.
                session.execute(self._insert(Prediction).on_conflict_do_nothing(), values)
            return len(new)

    def record_failure(self, job_id: str, image_key: str, reason: str) -> bool:
        """Record that ``job_id`` could not read ``image_key`` and why; False if it was recorded before
        (the first reason stays)."""
        values = {"job_id": job_id, "image_key": image_key, "reason": reason, "created_at": self.now()}
        with self.store.write() as session:
            insert = self._insert(PredictionFailure).values(**values).on_conflict_do_nothing()
            return session.scalar(insert.returning(PredictionFailure.job_id)) is not None

    def failures(self, job_id: str, limit: int | None = None) -> list[tuple[str, str]]:
        """(image key, reason) of the images ``job_id`` (all its shards) could not read, by key; an image
        predicted after all (a later attempt read it) is not listed."""
        done = select(PredictionImage.image_key).where(PredictionImage.job_id == job_id)
        query = (select(PredictionFailure.image_key, PredictionFailure.reason)
                 .where(PredictionFailure.job_id == job_id, PredictionFailure.image_key.not_in(done))
                 .order_by(PredictionFailure.image_key).limit(limit))
        with self.store.read() as session:
            return [(key, reason) for key, reason in session.execute(query)]

    def count_failures(self, job_id: str) -> int:
        done = select(PredictionImage.image_key).where(PredictionImage.job_id == job_id)
        query = select(func.count()).where(PredictionFailure.job_id == job_id, PredictionFailure.image_key.not_in(done))
        with self.store.read() as session:
            return session.scalar(query) or 0

    def ranked(self, job_id: str) -> list[RankedImage]:
        """The job's images that carry an uncertainty, most uncertain first (ties by key)."""
        query = (
            select(PredictionImage.image_key, PredictionImage.uncertainty, PredictionImage.fingerprint)
            .where(PredictionImage.job_id == job_id, PredictionImage.uncertainty.is_not(None))
            .order_by(PredictionImage.uncertainty.desc(), PredictionImage.image_key)
        )
        with self.store.read() as session:
            return [RankedImage(key, float(u), f) for key, u, f in session.execute(query) if u is not None]

    def uncertainty(self, job_id: str, image_key: str) -> float | None:
        """The model's uncertainty about one image of a job (None: not stored, or stored before it existed)."""
        query = select(PredictionImage.uncertainty).where(PredictionImage.job_id == job_id,
                                                           PredictionImage.image_key == image_key)
        with self.store.read() as session:
            value = session.scalar(query)
        return None if value is None else float(value)

    def done_images(self, job_id: str) -> set[str]:
        """Keys of the images ``job_id`` has written (with or without instances): a resumed job skips them."""
        with self.store.read() as session:
            return set(session.scalars(select(PredictionImage.image_key).where(PredictionImage.job_id == job_id)))

    def for_image(self, image_key: str, job_id: str | None = None) -> list[PredictionRow]:
        """One image's instances, ordered by instance number.

        With ``job_id``, that job's rows (also while it still runs). Without, the rows of the most
        recently finished *succeeded* job that processed the image; running, failed and cancelled
        jobs are ignored, and an image that job found empty gives []. One query: an index lookup
        on ``prediction_images(image_key)`` picks the job, one on ``predictions(image_key, job_id)``
        fetches its rows.
        """
        chosen: ScalarSelect[str] | str
        if job_id is None:
            chosen = (
                select(PredictionImage.job_id)
                .join(Job, Job.id == PredictionImage.job_id)
                .where(PredictionImage.image_key == image_key, Job.state == "succeeded")
                .order_by(Job.finished_at.desc(), Job.id.desc())
                .limit(1)
                .scalar_subquery()
            )
        else:
            chosen = job_id
        query = (
            select(*_COLUMNS)
            .where(Prediction.image_key == image_key, Prediction.job_id == chosen)
            .order_by(Prediction.instance)
        )
        with self.store.read() as session:
            return [PredictionRow(*row) for row in session.execute(query)]

    def iter_job(self, job_id: str, batch_size: int = 1000) -> Generator[PredictionRow, None, None]:
        """Stream a job's rows ordered by (image_key, instance), ``batch_size`` at a time from the server.

        Uses a server-side cursor on PostgreSQL, so memory stays flat however many rows there are.
        The read transaction stays open until the iterator is exhausted or closed: consume it
        promptly, or ``close()`` it (a ``with contextlib.closing(...)`` block) when stopping early.
        """
        query = (
            select(*_COLUMNS)
            .where(Prediction.job_id == job_id)
            .order_by(Prediction.image_key, Prediction.instance)
            .execution_options(yield_per=batch_size)
        )
        with self.store.read() as session:
            for row in session.execute(query):
                yield PredictionRow(*row)

    def iter_job_images(
        self, job_id: str, batch_size: int = 1000
    ) -> Iterator[tuple[str, int | None, int | None, list[PredictionRow]]]:
        """Stream a job's images in key order as ``(image_key, height, width, rows)``, including the images
        where nothing was found (``rows == []``): what every export reads. One query (done markers LEFT
        JOIN rows), streamed like `iter_job`; close it when stopping early."""
        query = (
            select(PredictionImage.image_key, PredictionImage.height, PredictionImage.width, *_COLUMNS[2:])
            .select_from(PredictionImage)
            .outerjoin(Prediction, (Prediction.job_id == PredictionImage.job_id)
                       & (Prediction.image_key == PredictionImage.image_key))
            .where(PredictionImage.job_id == job_id)
            .order_by(PredictionImage.image_key, Prediction.instance)
            .execution_options(yield_per=batch_size)
        )
        current: tuple[str, int | None, int | None] | None = None
        rows: list[PredictionRow] = []
        with self.store.read() as session:
            for key, height, width, *fields in session.execute(query):
                if current is None or key != current[0]:
                    if current is not None:
                        yield (*current, rows)
                    current, rows = (key, height, width), []
                if fields[0] is not None:  # instance NULL: the image had no rows
                    rows.append(PredictionRow(job_id, key, *fields))
            if current is not None:
                yield (*current, rows)

    def images_in_order(self, job_id: str, keys: Sequence[str], chunk: int = 500
                        ) -> Iterator[tuple[str, int | None, int | None, list[PredictionRow]]]:
        """`iter_job_images` for the images ``keys`` names, in that order (a ranking's); a key the job has
        not stored is left out. Two queries per ``chunk`` keys (markers, then rows), so a long list stays
        under the database's parameter limit and in bounded memory."""
        for start in range(0, len(keys), chunk):
            part = list(dict.fromkeys(keys[start:start + chunk]))
            markers = select(PredictionImage.image_key, PredictionImage.height, PredictionImage.width).where(
                PredictionImage.job_id == job_id, PredictionImage.image_key.in_(part))
            rows_query = (select(*_COLUMNS).where(Prediction.job_id == job_id, Prediction.image_key.in_(part))
                          .order_by(Prediction.image_key, Prediction.instance))
            rows: dict[str, list[PredictionRow]] = {}
            with self.store.read() as session:
                sizes = {key: (height, width) for key, height, width in session.execute(markers)}
                for row in session.execute(rows_query):
                    found = PredictionRow(*row)
                    rows.setdefault(found.image_key, []).append(found)
            for key in part:
                if key in sizes:
                    yield (key, *sizes[key], rows.get(key, []))

    def count(self, job_id: str) -> int:
        """Number of stored instance rows of ``job_id``."""
        with self.store.read() as session:
            return session.scalar(select(func.count()).where(Prediction.job_id == job_id)) or 0

    def count_images(self, job_id: str) -> int:
        """Number of images ``job_id`` has written (``images_done`` of a resumed predict job)."""
        with self.store.read() as session:
            return session.scalar(select(func.count()).where(PredictionImage.job_id == job_id)) or 0


def _row_values(
    job_id: str, image_key: str, position: int, row: Mapping[str, Any], height: int | None, width: int | None
) -> dict[str, Any]:
    """Column values of one row, as plain Python types (JSON columns cannot take numpy scalars)."""
    unknown = set(row) - set(ROW_FIELDS)
    if unknown:
        raise ValueError(
            f"job {job_id}, image {image_key!r}: unknown prediction fields {sorted(unknown)}; "
            f"known: {', '.join(ROW_FIELDS)}"
        )
    h, w = row.get("height", height), row.get("width", width)
    if h is None or w is None:
        raise ValueError(f"job {job_id}, image {image_key!r}, row {position}: height and width are required")
    rle = row.get("rle")
    if rle is not None:
        counts = rle["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if not isinstance(counts, str):
            raise ValueError(
                f"job {job_id}, image {image_key!r}, row {position}: rle counts must be compressed "
                f"(str or bytes), got {type(counts).__name__}"
            )
        rle = {"size": [int(s) for s in rle["size"]], "counts": counts}
    bbox = row.get("bbox")
    category_id, score = row.get("category_id"), row.get("score")
    return {
        "job_id": job_id,
        "image_key": image_key,
        "instance": int(row.get("instance", position)),
        "category_id": None if category_id is None else int(category_id),
        "category_name": row.get("category_name"),
        "score": None if score is None else float(score),
        "bbox": None if bbox is None else [float(v) for v in bbox],
        "rle": rle,
        "height": int(h),
        "width": int(w),
    }


class PredictionBuffer:
    """Collects one job's predicted images and writes them `PredictionStore.write_images` at a time:
    every ``size`` images, or when ``max_wait`` seconds passed since the first one waiting. A crash
    loses only what waits here, and a resumed job predicts those images again."""

    def __init__(self, store: PredictionStore, job_id: str, size: int = 16, max_wait: float = 1.0,
                 on_flush: Callable[[int], None] | None = None) -> None:
        self.store, self.job_id, self.size, self.max_wait, self.on_flush = store, job_id, size, max_wait, on_flush
        self._waiting: list[PredictedImage] = []
        self._since = 0.0

    def add(self, image_key: str, rows: Sequence[Mapping[str, Any]], height: int | None, width: int | None, *,
            uncertainty: float | None = None, fingerprint: str | None = None) -> None:
        import time

        if not self._waiting:
            self._since = time.monotonic()
        self._waiting.append(PredictedImage(image_key, rows, height, width, uncertainty, fingerprint))
        if len(self._waiting) >= self.size or time.monotonic() - self._since >= self.max_wait:
            self.flush()

    def flush(self) -> int:
        """Write what waits; returns how many images were new."""
        if not self._waiting:
            return 0
        waiting, self._waiting = self._waiting, []
        written = self.store.write_images(self.job_id, waiting)
        if self.on_flush is not None:
            self.on_flush(len(waiting))
        return written
