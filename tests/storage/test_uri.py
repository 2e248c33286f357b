"""URIs as config values and their confinement: the prefix rule of segpipe.paths, on normalised URIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.jobs.specs import PredictSpec, confine_spec, dump_spec, load_spec
from segpipe.paths import PathNotAllowed, confine
from segpipe.settings import Settings
from segpipe.storage.uri import Uri, is_uri, parse_uri, to_location

ROOTS = [Uri("s3://bucket/data"), Path("/srv/data")]


def test_uris_are_normalised() -> None:
    assert parse_uri("S3://bucket//data/./a/") == "s3://bucket/data/a"
    assert parse_uri("s3://bucket/data") / "x/y.png" == "s3://bucket/data/x/y.png"
    assert is_uri("s3://b/k") and is_uri("gs://b") and not is_uri("/tmp/x") and not is_uri("file:///tmp/x")
    assert to_location("file:///tmp/x") == Path("/tmp/x") and isinstance(to_location("s3://b/k"), Uri)


@pytest.mark.parametrize("inside", ["s3://bucket/data", "s3://bucket/data/images", "s3://bucket//data/./images"])
def test_uris_inside_a_uri_root_are_allowed(inside: str) -> None:
    assert confine(inside, ROOTS).is_relative_to(Uri("s3://bucket/data"))


@pytest.mark.parametrize("outside", [
    "s3://bucket/data/../secret",       # climbing out
    "s3://bucket/database/x",          # a sibling prefix that shares the letters
    "s3://bucket",                     # the bucket above the prefix
    "s3://other/data/x",               # another bucket
    "gs://bucket/data/x",              # another store
])
def test_uris_outside_are_refused(outside: str) -> None:
    with pytest.raises(PathNotAllowed):
        confine(outside, ROOTS)


def test_local_paths_are_not_matched_against_uri_roots() -> None:
    assert confine("/srv/data/a.png", ROOTS) == Path("/srv/data/a.png").resolve()
    with pytest.raises(PathNotAllowed):
        confine("/etc/passwd", ROOTS)


def test_specs_keep_uris_through_validation_and_dump() -> None:
    spec = PredictSpec.model_validate({"model": "roads@production", "images": "s3://bucket/data/imgs"})
    assert isinstance(spec.images, Uri)
    confined = confine_spec(spec, ROOTS, Path("/srv/artifacts"))
    again = load_spec("predict", dump_spec(confined))
    assert again.images == "s3://bucket/data/imgs"
    with pytest.raises(PathNotAllowed, match="outside the allowed data roots"):
        confine_spec(PredictSpec.model_validate({"model": "m@1", "images": "s3://bucket/other"}), ROOTS, Path("/a"))


def test_settings_take_uri_roots() -> None:
    s = Settings(data_roots="s3://bucket/data,/srv/data", artifact_root="s3://bucket/artifacts")
    assert s.roots[0] == "s3://bucket/data" and s.roots[1] == Path("/srv/data").resolve()
    assert s.artifacts == "s3://bucket/artifacts"


def test_a_local_path_with_only_uri_roots_is_refused_by_name() -> None:
    with pytest.raises(PathNotAllowed, match="only object-store roots"):
        confine("images", [Uri("s3://bucket/data")])
