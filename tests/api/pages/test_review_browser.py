"""The review pages in a real headless browser (Debian's chromium through Playwright) against a real
uvicorn: log in with a token, open a finished predict job, check the overlays in screenshot pixels,
move the score slider, switch to outlines, hover an instance, download an export (whole, or the
filtered selection: classes toggled off and instances under the slider left out)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api.pages.conftest import CAT, DOG, GREY, Site, canvas_pixels, log_in

pytestmark = pytest.mark.integration

# tile canvases show the 128×96 images at full resolution (below the 256 px cap)
CAT_CENTRE = (48, 32)  # (y, x)
DOG_CENTRE = (50, 100)
BACKGROUND = (85, 60)

DOWNLOAD_TIMEOUT_MS = 120_000


def coloured(pixels: np.ndarray, yx: tuple[int, int]) -> bool:
    """True where the browser drew a mask colour over the grey image."""
    r, g, b = (int(v) for v in pixels[yx])
    return max(abs(r - GREY), abs(g - GREY), abs(b - GREY)) > 20


def open_gallery(page: Any, site: Site) -> str:
    log_in(page, site.base, "ann-token")
    page.click(f"a[href='/ui/jobs/{site.job_id}']")
    tile = ".tile[data-key='a']"
    page.wait_for_selector(f"{tile}[data-state='drawn']", timeout=20_000)
    return f"{tile} canvas"


def test_login_then_overlays_slider_outline_and_download(page: Any, site: Site, tmp_path: Path) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    canvas = open_gallery(page, site)

    drawn = canvas_pixels(page, canvas)
    assert coloured(drawn, CAT_CENTRE) and coloured(drawn, DOG_CENTRE), "both instances drawn"
    assert not coloured(drawn, BACKGROUND), "the image itself stays grey outside the masks"
    assert page.get_attribute(canvas, "data-shown") == "2"

    # the dog scores 0.3: a 0.5 threshold hides it, keeps the cat
    page.fill("#score", "0.5")
    after = canvas_pixels(page, canvas)
    assert coloured(after, CAT_CENTRE)
    assert not coloured(after, DOG_CENTRE), "the low-score instance disappeared"
    assert page.get_attribute(canvas, "data-shown") == "1"
    assert "1 of 2" in page.inner_text(".tile[data-key='a'] .count")

    # untick the cat class: nothing left on image a
    page.uncheck(".class-box[data-category='1']")
    assert not coloured(canvas_pixels(page, canvas), CAT_CENTRE)
    page.check(".class-box[data-category='1']")
    page.fill("#score", "0")

    # outlines: the disc's centre is grey again, its rim coloured
    page.select_option("#mode", "outline")
    outlined = canvas_pixels(page, canvas)
    assert not coloured(outlined, CAT_CENTRE)
    assert coloured(outlined, (48, 12)), "the disc's left rim (x = 32 - 20) is drawn"

    # download the whole job's COCO results, then only what scores >= 0.5 (the dog drops out)
    def download(selector: str) -> list[tuple[str, int]]:
        # the first export of a fresh server loads its code (~30 s on two busy cores): past the 30 s default
        with page.expect_download(timeout=DOWNLOAD_TIMEOUT_MS) as info:
            page.click(selector)
        saved = tmp_path / info.value.suggested_filename
        info.value.save_as(saved)
        return sorted((str(r["image_id"]), r["category_id"]) for r in json.loads(saved.read_text()))

    names = page.eval_on_selector_all("a.download", "links => links.map(a => a.dataset.format)")
    assert {"coco", "coco-results", "cvat-mask", "label-studio", "png"} <= set(names)
    assert download("a.download[data-format='coco-results']") == [("a", CAT), ("a", DOG), ("b", CAT)]
    page.fill("#score", "0.5")
    page.check("#filtered")
    assert download("a.download[data-format='coco-results']") == [("a", CAT), ("b", CAT)]

    # toggle the cat class off (score back to 0): the filtered selection is the dog alone, in every format
    page.fill("#score", "0")
    page.uncheck(".class-box[data-category='1']")
    href = page.get_attribute("a.download[data-format='coco-results']", "href")
    assert f"categories={DOG}" in href and "score_threshold=0" in href, href
    assert download("a.download[data-format='coco-results']") == [("a", DOG)]
    with page.expect_download(timeout=DOWNLOAD_TIMEOUT_MS) as info:
        page.click("a.download[data-format='coco']")
    zipped = tmp_path / info.value.suggested_filename
    info.value.save_as(zipped)
    with zipfile.ZipFile(zipped) as archive:
        coco = json.loads(archive.read("annotations/instances_default.json"))
    assert [(a["image_id"], a["category_id"]) for a in coco["annotations"]] == [(next(
        i["id"] for i in coco["images"] if i["file_name"].startswith("a")), DOG)]
    # the whole-job links stay whole
    page.uncheck("#filtered")
    assert "categories" not in page.get_attribute("a.download[data-format='coco-results']", "href")

    # the token never travels in a URL
    assert requested and not any("ann-token" in url for url in requested)


def test_annotator_pages_cannot_change_anything(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token")
    status = page.evaluate(
        """async (job) => (await fetch('/jobs/' + job + '/cancel', {method: 'POST', credentials: 'same-origin'})).status""",
        site.job_id,
    )
    assert status == 401, "the session cookie authorizes reads only; changes need the Authorization header"
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "segpipe_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "page scripts cannot read the token"


def test_logout_in_the_browser_revokes_the_server_session(page: Any, browser: Any, site: Site) -> None:
    """The cookie holds a session id (not the token); after "Log out" a copy of it opens nothing."""
    log_in(page, site.base, "ann-token")
    session = next(c for c in page.context.cookies() if c["name"] == "segpipe_session")
    assert session["value"] != "ann-token" and "ann-token" not in session["value"]
    copied = browser.new_context()
    try:
        copied.add_cookies([session])
        other = copied.new_page()
        other.goto(site.base + "/ui/models")
        assert "/ui/models" in other.url and "/ui/login" not in other.url, "the copied session works before logout"
        page.click("form.logout button")
        page.wait_for_url(lambda url: "/ui/login" in url)
        other.goto(site.base + "/ui/models")
        assert "/ui/login" in other.url, "a copied session cookie still worked after logout"
        status = other.evaluate("async () => (await fetch('/jobs', {credentials: 'same-origin'})).status")
        assert status == 401
    finally:
        copied.close()


def test_bad_token_is_refused(page: Any, site: Site) -> None:
    page.goto(site.base + "/ui/jobs")
    page.fill("#token", "not-a-token")
    page.click("#login-button")
    assert "unknown bearer token" in page.inner_text("#login-error")
    assert "/ui/login" in page.url


def test_full_size_image_lists_instances_and_highlights_on_hover(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token", start=f"/ui/jobs/{site.job_id}/images/a")
    page.wait_for_selector("#instances tbody tr >> nth=1")
    rows = page.locator("#instances tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).inner_text()
    assert "cat" in first and "0.900" in first and "1257" in first  # area of a radius-20 disc
    page.wait_for_function("document.getElementById('canvas').dataset.drawn === '1'")
    before = canvas_pixels(page, "#canvas")
    rows.nth(1).hover()
    assert "lit" in (rows.nth(1).get_attribute("class") or "")
    lit = canvas_pixels(page, "#canvas")
    assert not np.array_equal(before[DOG_CENTRE], lit[DOG_CENTRE]), "hovering the dog's row highlights its mask"
    assert np.array_equal(before[CAT_CENTRE], lit[CAT_CENTRE])
    assert page.locator("#next-image").get_attribute("href").endswith("/images/b")


def test_jobs_page_shows_live_progress(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token")
    running = page.locator(f"tr[data-job='{site.running_job_id}']")
    assert "1 / 4" in running.inner_text()
    assert "demo@2" in page.locator(f"tr[data-job='{site.job_id}']").inner_text()
    site.stores.jobs.update_progress(site.running_job_id, "w2", {"images_done": 3})
    page.wait_for_function(
        "job => document.querySelector(`tr[data-job='${job}'] .count`).textContent.startsWith('3 / 4')",
        arg=site.running_job_id, timeout=15_000,
    )


def test_gallery_pages_through_a_job(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token", start=f"/ui/jobs/{site.job_id}?per=2")
    assert page.locator(".tile").count() == 2
    page.click("#next-page")
    page.wait_for_selector(".tile[data-key='c'][data-state='drawn']")
    assert page.locator(".tile").count() == 1
    assert page.get_attribute(".tile[data-key='c'] canvas", "data-shown") == "0"


def test_models_pages(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token", start="/ui/models")
    assert "demo" in page.inner_text("main") and "production" in page.inner_text("main")
    page.click("a[href='/ui/models/demo']")
    versions = page.inner_text("#versions")
    assert "production" in versions and "0.42" in versions
    decisions = page.inner_text("#decisions")
    assert "promoted" in decisions and "manual" in decisions


def test_the_hovered_instance_is_outlined_on_top_of_later_masks(page: Any, site: Site) -> None:
    """Image d: the dog's box is drawn after the cat's disc and covers its right half. Hovering the cat
    outlines it in white all round, also where the dog's mask lies over it."""
    log_in(page, site.base, "ann-token", start=f"/ui/jobs/{site.interactive_job_id}/images/d")
    page.wait_for_selector("#instances tbody tr >> nth=1")
    page.wait_for_function("document.getElementById('canvas').dataset.drawn === '1'")
    page.locator("#instances tbody tr").nth(0).hover()
    page.wait_for_function("document.querySelector('#instances tbody tr').classList.contains('lit')")
    lit = canvas_pixels(page, "#canvas")
    assert (lit[48, 44] > 240).all(), "the disc's left rim (outside the dog) is white"
    assert (lit[48, 84] > 240).all(), f"the disc's right rim, under the dog's mask, is white too: {lit[48, 84]}"


def test_jobs_list_marks_interactive_jobs(page: Any, site: Site) -> None:
    log_in(page, site.base, "ann-token")
    interactive = page.locator(f"tr[data-job='{site.interactive_job_id}'] .badge.interactive")
    assert interactive.count() == 1 and interactive.inner_text() == "interactive"
    assert page.locator(f"tr[data-job='{site.job_id}'] .badge").count() == 0


@pytest.mark.parametrize("path", ["/ui/models", "/ui/models/demo"])
def test_models_pages_fit_the_window_and_show_coco_minus_one_as_not_applicable(page: Any, site: Site,
                                                                                path: str) -> None:
    log_in(page, site.base, "ann-token", start=path)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"{path} is {width} px wide in a 1280 px window"
    text = page.inner_text("main")
    assert "n/a" in text and not re.search(r"(^|[\s=])-1(\.0+)?(\s|$)", text), text
