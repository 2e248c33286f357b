"""The gallery's label-studio download carries the image-URL prefix under which Label Studio serves the job's images."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from segpipe.api.pages.downloads import export_links, label_studio_prefix


def test_prefix_of_a_folder_under_the_document_root(tmp_path: Path) -> None:
    (tmp_path / "batch1" / "day2").mkdir(parents=True)
    assert label_studio_prefix(tmp_path / "batch1" / "day2", tmp_path) == "/data/local-files/?d=batch1/day2/"
    assert label_studio_prefix(tmp_path, tmp_path) == "/data/local-files/?d="
    assert label_studio_prefix(tmp_path / "batch1", tmp_path / "elsewhere") is None
    assert label_studio_prefix(tmp_path, None) is None


def test_only_the_label_studio_link_gets_it() -> None:
    links = {link["name"]: link["url"] for link in export_links("job1", "instance", "/data/local-files/?d=b/")}
    query = parse_qs(urlsplit(links["label-studio"]).query)
    assert query["image_url_prefix"] == ["/data/local-files/?d=b/"] and query["format"] == ["label-studio"]
    assert "image_url_prefix" not in links["coco"]
