"""The review pages: predict jobs, a job's gallery, what to label next in it, one image at full size,
model versions.

Server-rendered with Jinja2; a little plain JavaScript (``static/``) fetches each visible image's masks
from ``GET /images/{key}/masks?job=…`` and draws them in the browser. Every page reads a bounded amount:
one page of jobs or images, or one image; nothing here loads a whole job. Pages carry a strict
Content-Security-Policy (scripts and styles from this site only, no inline script): data reaches the
scripts through ``data-*`` attributes, which Jinja2 escapes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from segpipe.api.auth import Principal
from segpipe.api.deps import ApiContext, context
from segpipe.api.label_next import ranked_job
from segpipe.api.pages.downloads import (
    export_links,
    label_next_links,
    label_studio_prefix,
)
from segpipe.api.pages.session import page_user
from segpipe.api.schemas import decision_out, job_out, version_out
from segpipe.errors import NotFoundError
from segpipe.job_kinds import PREDICTIONS, has, with_capability
from segpipe.ranking.select import DEFAULT_MIN_DISTANCE
from segpipe.stores.prediction_pages import (
    CategoryCount,
    image_entry,
    image_neighbours,
    image_page,
    job_categories,
    stored_image_counts,
)
from segpipe.vocabulary import JOB_STATES, TERMINAL_STATES

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
JOBS_PER_PAGE = 25
IMAGES_PER_PAGE = 48
MAX_IMAGES_PER_PAGE = 200
LABEL_NEXT_SHOWN = 24
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Distinct colours for categories (by position among the job's categories); the same on every page.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")

router = APIRouter(prefix="/ui", include_in_schema=False)


def metric_text(value: object) -> str:
    """A metric as a page shows it: 4 significant digits; COCO's -1 ("no object of that size") as n/a."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "n/a" if value == -1 else f"{value:.4g}"
    return ""


TEMPLATES.env.filters["metric"] = metric_text


def render(request: Request, template: str, who: Principal | None, status_code: int = 200, **values: Any) -> Response:
    """A page with the security headers every page carries."""
    response = TEMPLATES.TemplateResponse(request, template, {"who": who, **values}, status_code=status_code)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def colour_of(position: int) -> str:
    return PALETTE[position % len(PALETTE)]


_categories_cache: OrderedDict[tuple[int, str], list[CategoryCount]] = OrderedDict()
_cache_lock = threading.Lock()


def categories_of(ctx: ApiContext, job_id: str, state: str) -> list[CategoryCount]:
    """The job's categories; kept (for a few jobs) once the job has finished, since its rows no longer change."""
    key = (id(ctx.stores), job_id)
    with _cache_lock:
        if key in _categories_cache:
            _categories_cache.move_to_end(key)
            return _categories_cache[key]
    found = job_categories(ctx.stores.db, job_id)
    if state in TERMINAL_STATES:
        with _cache_lock:
            _categories_cache[key] = found
            while len(_categories_cache) > 32:
                _categories_cache.popitem(last=False)
    return found


def model_label(job: Any) -> str:
    """Which model version made (or will make) the job's predictions."""
    reported = (job.progress or {}).get("model")
    if reported:
        return str(reported)
    if job.model_name:
        return f"{job.model_name}@{job.model_version}" if job.model_version else job.model_name
    for line in (job.config or "").splitlines():
        if line.startswith("model:"):
            return line.removeprefix("model:").strip().strip("'\"")
    return "—"


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    state: str | None = Query(None),
    page: int = Query(1, ge=1, le=1_000_000),
    ctx: ApiContext = Depends(context),
) -> Response:
    """Predict jobs newest first: state, progress (live while running), model version, image counts."""
    who = page_user(request)
    state = state if state in JOB_STATES else None
    jobs, total = ctx.stores.jobs.list(state=state, kind=with_capability(PREDICTIONS), limit=JOBS_PER_PAGE,
                                       offset=(page - 1) * JOBS_PER_PAGE)
    stored = stored_image_counts(ctx.stores.db, [job.id for job in jobs])
    rows = [{"job": job_out(job), "stored": stored.get(job.id, 0), "model": model_label(job)} for job in jobs]
    pages = max(1, math.ceil(total / JOBS_PER_PAGE))
    return render(request, "jobs.html", who, rows=rows, total=total, page=page, pages=pages, state=state,
                  states=JOB_STATES)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def gallery_page(
    request: Request,
    job_id: str,
    page: int = Query(1, ge=1, le=1_000_000),
    per: int = Query(IMAGES_PER_PAGE, ge=1, le=MAX_IMAGES_PER_PAGE),
    ctx: ApiContext = Depends(context),
) -> Response:
    """One page of a job's images; the browser draws each visible image's masks over it."""
    who = page_user(request)
    job = job_out(ctx.stores.jobs.get(job_id))
    entries, total = image_page(ctx.stores.db, job_id, limit=per, offset=(page - 1) * per)
    categories = [
        {"id": c.category_id, "name": c.category_name or str(c.category_id), "instances": c.instances,
         "colour": colour_of(i)}
        for i, c in enumerate(categories_of(ctx, job_id, job.state))
    ]
    pages = max(1, math.ceil(total / per))
    predictions = has(job.kind, PREDICTIONS)
    task = ctx.tasks.task_of(job_id) if predictions and total else None
    prefix = label_studio_prefix(_job_images(ctx, job_id), ctx.settings.label_studio_files_root)
    return render(request, "gallery.html", who, job=job, entries=entries, total=total, page=page, pages=pages,
                  per=per, categories=categories, downloads=export_links(job_id, task, prefix),
                  ranks_images=predictions)


@router.get("/jobs/{job_id}/label-next", response_class=HTMLResponse)
def label_next_page(
    request: Request,
    job_id: str,
    top: int = Query(LABEL_NEXT_SHOWN, ge=1, le=MAX_IMAGES_PER_PAGE),
    ctx: ApiContext = Depends(context),
) -> Response:
    """A predict job's ``top`` images to label next, most uncertain first, drawn like the gallery's tiles, with
    the links to the same images as a Label Studio tasks file and a CVAT subset."""
    who = page_user(request)
    ranked = ranked_job(ctx, job_id, top, DEFAULT_MIN_DISTANCE)
    job = job_out(ctx.stores.jobs.get(job_id))
    categories = [
        {"id": c.category_id, "name": c.category_name or str(c.category_id), "instances": c.instances,
         "colour": colour_of(i)}
        for i, c in enumerate(categories_of(ctx, job_id, job.state))
    ]
    entries = [{"rank": i + 1, "image_key": c.key, "uncertainty": c.uncertainty}
               for i, c in enumerate(ranked.ranking.chosen)]
    prefix = label_studio_prefix(_job_images(ctx, job_id), ctx.settings.label_studio_files_root)
    return render(request, "label_next.html", who, job=job, entries=entries, top=top, scored=ranked.scored,
                  duplicates=len(ranked.ranking.duplicates), categories=categories,
                  downloads=label_next_links(job_id, top, prefix) if entries else [])


def _job_images(ctx: ApiContext, job_id: str) -> str | None:
    """A predict job's image folder, as its spec names it (None when it cannot be read)."""
    from segpipe.jobs.specs import load_spec

    stored = ctx.stores.jobs.get(job_id)
    if not has(stored.kind, PREDICTIONS):
        return None
    try:
        images = getattr(load_spec(stored.kind, stored.config), "images", None)
        return str(images) if images else None
    except Exception:  # noqa: BLE001 - an old or odd spec only loses the prefix, never the page
        return None


@router.get("/jobs/{job_id}/images/{image_key:path}", response_class=HTMLResponse)
def image_page_view(request: Request, job_id: str, image_key: str, ctx: ApiContext = Depends(context)) -> Response:
    """One image at full size with a table of its instances (class, score, area); hover highlights."""
    who = page_user(request)
    job = job_out(ctx.stores.jobs.get(job_id))
    entry = image_entry(ctx.stores.db, job_id, image_key)
    if entry is None:
        raise NotFoundError(f"job {job_id} has stored nothing for image {image_key!r}")
    categories = [
        {"id": c.category_id, "name": c.category_name or str(c.category_id), "colour": colour_of(i)}
        for i, c in enumerate(categories_of(ctx, job_id, job.state))
    ]
    before, after = image_neighbours(ctx.stores.db, job_id, image_key)
    return render(request, "image.html", who, job=job, entry=entry, categories=categories, before=before, after=after)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, ctx: ApiContext = Depends(context)) -> Response:
    """Every model with its versions: stage, metrics, dataset hash, parent."""
    who = page_user(request)
    versions = ctx.stores.versions.list()
    names: dict[str, list[Any]] = {}
    for v in versions:
        names.setdefault(v.name, []).append(version_out(v))
    return render(request, "models.html", who, models=names)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, ctx: ApiContext = Depends(context)) -> Response:
    """One model: versions with stages and metrics, and its promotion decisions with their reasons."""
    who = page_user(request)
    versions = [version_out(v) for v in ctx.stores.versions.list(name=name)]
    if not versions:
        raise NotFoundError(f"model {name!r} has no versions")
    decisions = [decision_out(d) for d in ctx.stores.decisions.list(name, limit=100)]
    metric_names = sorted({k for v in versions for k, x in v.metrics.items() if isinstance(x, (int, float))})
    return render(request, "model.html", who, name=name, versions=versions, decisions=decisions,
                  metric_names=metric_names)
