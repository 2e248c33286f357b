"""Snapshots are content-hashed and immutable; archives are read as untrusted input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.errors import DataError, NotFoundError
from segpipe.settings import Settings
from segpipe.snapshots.archive import Archive
from segpipe.snapshots.draft import Draft, DraftImage
from segpipe.snapshots.formats import PullContext
from segpipe.snapshots.pull import pull
from segpipe.snapshots.store import SnapshotStore


def _png(h: int = 16, w: int = 20, value: int = 0) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _draft(mask_rows: slice = slice(2, 8), image_value: int = 0) -> Draft:
    draft = Draft(categories=["cat"])
    draft.images["b.png"] = DraftImage("b.png", _png(value=image_value), 20, 16)
    draft.images["a.png"] = DraftImage("a.png", _png(), 20, 16)
    mask = np.zeros((16, 20), bool)
    mask[mask_rows, 3:9] = True
    draft.add_mask("b.png", "cat", mask)
    return draft


def test_same_content_is_the_same_snapshot_and_nothing_is_rewritten(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    first, new = store.write(_draft(), source="cvat-mask:one.zip", format="cvat-mask")
    assert new
    again, new_again = store.write(_draft(), source="cvat-mask:two.zip", format="cvat-mask")
    assert not new_again and again == first  # the first source and time stand
    assert [s.id for s in store.list()] == [first.id]
    coco = json.loads((Path(first.path) / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.png"]  # ids in file-name order
    assert coco["annotations"][0]["image_id"] == 2 and coco["annotations"][0]["iscrowd"] == 0


@pytest.mark.parametrize("change", ["mask", "image"])
def test_any_change_of_masks_or_image_bytes_is_a_new_snapshot(tmp_path: Path, change: str) -> None:
    store = SnapshotStore(tmp_path)
    base, _ = store.write(_draft(), source="s", format="cvat-mask")
    other = _draft(mask_rows=slice(2, 9)) if change == "mask" else _draft(image_value=1)
    changed, new = store.write(other, source="s", format="cvat-mask")
    assert new and changed.id != base.id and len(store.list()) == 2


def test_unknown_snapshot_ids_are_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="16 hex"):
        SnapshotStore(tmp_path).get("../../etc")
    with pytest.raises(NotFoundError, match="no snapshot"):
        SnapshotStore(tmp_path).get("0" * 16)


def test_labels_outside_the_label_list_are_refused_with_both(tmp_path: Path) -> None:
    draft = _draft()
    draft.annotations[0].category = "dog"
    with pytest.raises(DataError, match=r"\['dog'\].*\['cat'\]"):
        SnapshotStore(tmp_path).write(draft, source="s", format="cvat-mask")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_members_that_climb_out_of_the_archive_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "evil.zip", {"../outside.txt": b"x"})
    with pytest.raises(DataError, match="outside the archive"):
        Archive(archive)


def test_an_archive_over_the_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"big.bin": b"\0" * 1_000_000})
    with pytest.raises(DataError, match="1000000 bytes uncompressed"):
        Archive(archive, max_total_bytes=100_000)


def test_an_export_without_images_says_how_to_export_it(tmp_path: Path) -> None:
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}], "categories": [], "annotations": []}
    archive = _zip(tmp_path / "noimages.zip", {"annotations/instances_default.json": json.dumps(coco).encode()})
    with pytest.raises(DataError, match="Save images"):
        pull(SnapshotStore(tmp_path), "cvat-coco", str(archive), PullContext(Settings()))


def test_a_zip_of_the_wrong_format_names_what_it_lacks(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "other.zip", {"readme.txt": b"hello"})
    with pytest.raises(DataError, match=r"labelmap\.txt"):
        pull(SnapshotStore(tmp_path), "cvat-mask", str(archive), PullContext(Settings()))
