"""Snapshots in an object-store artifact root (a real S3-API server): written once by one host, read,
listed and split by any other host from the same bytes, and never seen half-uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segpipe.data.dataset_hash import dataset_hash
from segpipe.errors import NotFoundError
from segpipe.paths import PathNotAllowed, confine
from segpipe.settings import Settings
from segpipe.snapshots.split import split_snapshot
from segpipe.snapshots.store import MANIFEST, SnapshotStore
from segpipe.storage.cache import DownloadCache
from segpipe.storage.uri import Uri
from tests.snapshots.test_split import _draft
from tests.support.s3_server import S3Server

pytestmark = [pytest.mark.integration]
BUCKET = "segpipe-snapshots"


@pytest.fixture
def root(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return f"s3://{BUCKET}/{request.node.name[:40]}"


def _host(root: str, home: Path) -> SnapshotStore:
    """The store as a process on another machine sees it: its own mirror and download cache."""
    return SnapshotStore(root, mirror=home / "artifacts", cache=DownloadCache(home / "downloads", 2**30))


def _objects(root: str) -> dict[str, str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    prefix = Uri(root).key + "/"
    return {name[len(prefix):]: str(info["ETag"]) for name, info in fs.find(Uri(root).key, detail=True).items()}


def test_a_snapshot_written_on_one_host_is_read_and_split_on_another(root: str, tmp_path: Path) -> None:
    writer, reader = _host(root, tmp_path / "a"), _host(root, tmp_path / "b")
    snapshot, new = writer.write(_draft(range(12)), source="label-studio:3", format="label-studio")
    assert new and snapshot.path == f"{root}/snapshots/{snapshot.id}"
    stored = _objects(root)
    assert f"snapshots/{snapshot.id}/{MANIFEST}" in stored
    assert sum(k.startswith(f"snapshots/{snapshot.id}/images/") for k in stored) == 12

    again, new = writer.write(_draft(range(12)), source="label-studio:3", format="label-studio")
    assert not new and again == snapshot and _objects(root) == stored  # nothing rewritten

    assert [s.id for s in reader.list()] == [snapshot.id]
    assert reader.get(snapshot.id) == snapshot
    on_b = split_snapshot(reader, snapshot, 0.25)  # B has no copy: it downloads through its cache
    on_a = split_snapshot(writer, snapshot, 0.25)  # A splits its own mirror copy
    assert (on_b.images, on_b.train, on_b.val) == (on_a.images, on_a.train, on_a.val)
    assert on_b.train == f"{root}/snapshots/{snapshot.id}/split-0.25/train.json" and on_b.counts == on_a.counts
    assert on_b.local[0].is_relative_to(tmp_path / "b") and on_a.local[0].is_relative_to(tmp_path / "a")
    assert json.loads(on_b.local[1].read_text()) == json.loads(on_a.local[1].read_text())
    # the version's data hash is the same whichever host computes it
    assert dataset_hash(on_a.local, cache=None) == dataset_hash(on_b.local, cache=None)


def test_a_snapshot_whose_upload_was_cut_short_is_not_there_until_written_again(root: str, tmp_path: Path) -> None:
    import s3fs

    writer, reader = _host(root, tmp_path / "a"), _host(root, tmp_path / "b")
    snapshot, _ = writer.write(_draft(range(4)), source="s", format="label-studio")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.rm(f"{Uri(root).key}/snapshots/{snapshot.id}/{MANIFEST}")  # the upload stopped before its last file
    assert reader.list() == []
    with pytest.raises(NotFoundError, match=snapshot.id):
        reader.get(snapshot.id)
    again, new = writer.write(_draft(range(4)), source="s", format="label-studio")
    assert new and again.id == snapshot.id and reader.get(snapshot.id).images == 4


def test_jobs_may_read_the_snapshots_prefix_of_an_object_store_root_and_nothing_else_there(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", data_roots=[tmp_path / "data"], artifact_root="s3://art/root")
    assert settings.roots[-1] == "s3://art/root/snapshots"
    assert confine("s3://art/root/snapshots/0123456789abcdef/images", settings.roots, what="images")
    for outside in ("s3://art/root/jobs/x/run/best.pt", "s3://art/root/snapshots/../jobs"):
        with pytest.raises(PathNotAllowed, match=r"outside|'\.\.'|not allowed"):
            confine(outside, settings.roots, what="images")
