"""YAML for configs: aliases refused (or, in trusted files, bounded), depth and size limited after parsing."""

from __future__ import annotations

import time

import pytest

from segpipe import safe_yaml
from segpipe.errors import ConfigError
from tests.api.test_hardening import billion_laughs


def test_aliases_are_refused_by_default() -> None:
    with pytest.raises(ConfigError, match="alias"):
        safe_yaml.load("a: &x [1]\nb: *x\n")


def test_trusted_files_may_use_aliases_but_their_expansion_is_bounded() -> None:
    assert safe_yaml.load("a: &x [1]\nb: *x\n", aliases=True) == {"a": [1], "b": [1]}
    started = time.monotonic()
    with pytest.raises(safe_yaml.DocumentTooLarge, match="more than 100000 values"):
        safe_yaml.load(billion_laughs(9), aliases=True)
    assert time.monotonic() - started < 10  # stops counting at the limit (it takes well under a second)


def test_dumps_never_hold_aliases() -> None:
    shared = {"images": "/d/i", "annotations": "/d/a.json"}
    text = safe_yaml.dump({"train": shared, "val": shared})
    assert "&" not in text and "*" not in text
    assert safe_yaml.load(text) == {"train": shared, "val": shared}


def test_python_tags_are_refused() -> None:
    with pytest.raises(ConfigError):
        safe_yaml.load("a: !!python/object/apply:os.system ['true']\n")
