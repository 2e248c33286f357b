"""The live Label Studio tests: a real Label Studio server (tests/support/labelstudio_server.py, one per
test session) and segpipe's own processes, each test on folders of its own."""

from __future__ import annotations

import pytest


@pytest.fixture
def predict_inputs() -> None:
    """The API route tests' predict inputs (tests/api/conftest.py, autouse) are not written here: the
    servers these tests start read folders of their own (one creates ``tmp_path/data`` itself)."""
