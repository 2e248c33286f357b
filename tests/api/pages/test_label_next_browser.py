"""The "label next" view in a real headless chromium against a real uvicorn: from the gallery to the job's
images in rank order (most uncertain first) with their uncertainty and drawn overlays, and the two
downloads — the Label Studio tasks file and the CVAT subset — holding the same images in the same order."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.api.pages.conftest import UNCERTAINTY, Site, canvas_pixels, log_in
from tests.api.pages.test_review_browser import CAT_CENTRE, DOWNLOAD_TIMEOUT_MS, coloured

pytestmark = pytest.mark.integration

RANKED = sorted(UNCERTAINTY, key=lambda key: -UNCERTAINTY[key])  # b, a, c


def download(page: Any, selector: str, folder: Path) -> Path:
    with page.expect_download(timeout=DOWNLOAD_TIMEOUT_MS) as info:
        page.click(selector)
    saved = folder / info.value.suggested_filename
    info.value.save_as(saved)
    return saved


def test_label_next_view_ranks_draws_and_downloads(page: Any, site: Site, tmp_path: Path) -> None:
    log_in(page, site.base, "ann-token", start=f"/ui/jobs/{site.job_id}")
    page.click("#label-next-link")
    page.wait_for_url(f"**/ui/jobs/{site.job_id}/label-next")

    tiles = page.locator("#gallery .tile")
    assert tiles.evaluate_all("ts => ts.map(t => t.dataset.key)") == RANKED
    assert tiles.evaluate_all("ts => ts.map(t => t.dataset.rank)") == ["1", "2", "3"]
    for i, key in enumerate(RANKED):
        caption = tiles.nth(i).inner_text()
        assert f"#{i + 1}" in caption and f"uncertainty {UNCERTAINTY[key]:.3f}" in caption, caption
    # the overlays are drawn as in the gallery: image a's cat over the grey image
    page.wait_for_selector(".tile[data-key='a'][data-state='drawn']", timeout=20_000)
    assert coloured(canvas_pixels(page, ".tile[data-key='a'] canvas"), CAT_CENTRE)

    links = {a["format"]: a["href"] for a in page.eval_on_selector_all(
        "a.label-next-download", "links => links.map(a => ({format: a.dataset.format, href: a.getAttribute('href')}))")}
    assert set(links) == {"label-studio", "cvat", "json"}
    for fmt, href in links.items():
        assert href.startswith(f"/jobs/{site.job_id}/label-next?format={fmt}&top=24"), href

    tasks = json.loads(download(page, "a.label-next-download[data-format='label-studio']", tmp_path).read_text())
    assert [(t["data"]["segpipe_image_id"], t["data"]["segpipe_rank"]) for t in tasks] == [
        (key, i + 1) for i, key in enumerate(RANKED)]
    assert [len(t["predictions"]) for t in tasks] == [1, 1, 1]
    with zipfile.ZipFile(download(page, "a.label-next-download[data-format='cvat']", tmp_path)) as archive:
        coco = json.loads(archive.read("annotations/instances_default.json"))
        assert archive.read("label_next.txt").decode().split() == [f"{key}.png" for key in RANKED]
        assert sorted(n for n in archive.namelist() if n.startswith("images/") and n != "images/") == sorted(
            f"images/{key}.png" for key in RANKED)
    assert [i["file_name"] for i in coco["images"]] == [f"{key}.png" for key in RANKED]

    # fewer: the top 2, and the links follow
    page.fill("#top", "2")
    page.click("form.filters button")
    page.wait_for_url("**/label-next?top=2")
    assert page.locator("#gallery .tile").evaluate_all("ts => ts.map(t => t.dataset.key)") == RANKED[:2]
    assert "&top=2" in page.get_attribute("a.label-next-download[data-format='cvat']", "href")


def test_label_next_view_needs_a_login_and_a_predict_job(page: Any, site: Site) -> None:
    page.goto(f"{site.base}/ui/jobs/{site.job_id}/label-next")
    assert "/ui/login" in page.url, "the view asks for a login like every page"
    train = site.stores.jobs.create("train", "task: instance\n", "gpu")
    log_in(page, site.base, "ann-token", start=f"/ui/jobs/{train.id}/label-next")
    body = json.loads(page.inner_text("body"))
    assert "train job" in body["error"] and "predict" in body["error"]
