"""Paged reads of a predict job's results for people browsing them (the review pages, ``GET /jobs/{id}/images``).

Every read here is bounded: one page of images (an index range on ``prediction_images``' primary key,
which starts with ``job_id``), or an aggregate the database computes. Nothing loads a whole job.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from segpipe.stores.db import Store
from segpipe.stores.models import Prediction, PredictionImage


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """One image a job processed: its key, how many instances it stored, and its size (None if unknown)."""

    image_key: str
    instances: int
    height: int | None
    width: int | None


@dataclass(frozen=True, slots=True)
class CategoryCount:
    """A category found in a job's predictions, with its number of instances and best score."""

    category_id: int | None
    category_name: str | None
    instances: int
    max_score: float | None


def image_page(store: Store, job_id: str, *, limit: int, offset: int = 0) -> tuple[list[ImageEntry], int]:
    """The job's images ordered by key, ``limit`` from ``offset``, and how many images it has in all."""
    query = (
        select(PredictionImage.image_key, PredictionImage.instances, PredictionImage.height, PredictionImage.width)
        .where(PredictionImage.job_id == job_id)
        .order_by(PredictionImage.image_key)
        .limit(limit)
        .offset(offset)
    )
    with store.read() as session:
        entries = [ImageEntry(*row) for row in session.execute(query)]
        total = session.scalar(select(func.count()).where(PredictionImage.job_id == job_id)) or 0
    return entries, total


def image_neighbours(store: Store, job_id: str, image_key: str) -> tuple[str | None, str | None]:
    """The keys before and after ``image_key`` in the job's key order (None at either end)."""
    base = select(PredictionImage.image_key).where(PredictionImage.job_id == job_id)
    with store.read() as session:
        before = session.scalar(
            base.where(PredictionImage.image_key < image_key).order_by(PredictionImage.image_key.desc()).limit(1)
        )
        after = session.scalar(
            base.where(PredictionImage.image_key > image_key).order_by(PredictionImage.image_key).limit(1)
        )
    return before, after


def image_entry(store: Store, job_id: str, image_key: str) -> ImageEntry | None:
    """One image's marker, or None when the job did not process it."""
    query = select(
        PredictionImage.image_key, PredictionImage.instances, PredictionImage.height, PredictionImage.width
    ).where(PredictionImage.job_id == job_id, PredictionImage.image_key == image_key)
    with store.read() as session:
        row = session.execute(query).first()
    return ImageEntry(*row) if row is not None else None


def job_categories(store: Store, job_id: str) -> list[CategoryCount]:
    """The categories in the job's predictions with counts, by category id (a prefix scan of the job's rows)."""
    query = (
        select(
            Prediction.category_id,
            func.max(Prediction.category_name),
            func.count(),
            func.max(Prediction.score),
        )
        .where(Prediction.job_id == job_id)
        .group_by(Prediction.category_id)
        .order_by(Prediction.category_id)
    )
    with store.read() as session:
        return [CategoryCount(*row) for row in session.execute(query)]


def stored_image_counts(store: Store, job_ids: list[str]) -> dict[str, int]:
    """How many images each of ``job_ids`` has stored (jobs with none are absent)."""
    if not job_ids:
        return {}
    query = (
        select(PredictionImage.job_id, func.count())
        .where(PredictionImage.job_id.in_(job_ids))
        .group_by(PredictionImage.job_id)
    )
    with store.read() as session:
        return dict(session.execute(query).all())  # the rows: a Result has keys(), so dict() would read it as a mapping
