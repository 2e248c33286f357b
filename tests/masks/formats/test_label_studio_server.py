"""A real Label Studio server (SQLite, loopback, its own venv) takes a project made with segpipe's labeling
config and imports segpipe's tasks JSON; the predictions read back through its API decode (with
label-studio-sdk's brush decoder) to the stored masks, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.masks.formats import export
from tests.masks.formats.samples import case
from tests.masks.formats.test_tool_imports import check_label_studio_read
from tests.support.labelstudio_server import LabelStudioServer
from tests.tools.venvs import run_tool

# one Label Studio server per test process: every test that needs it runs in the same xdist worker
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("label-studio")]


@pytest.mark.parametrize("task", ["instance", "semantic", "binary", "detection", "classification"])
def test_label_studio_server_imports_segpipe_tasks(
    task: str, label_studio_server: LabelStudioServer, tmp_path: Path
) -> None:
    prefix = "/data/local-files/?d=batch1/"
    images, ctx = case(task, image_url_prefix=prefix, model_version="dogs@3")
    export(images, ["label-studio"], ctx, tmp_path)
    read = run_tool("label-studio", "labelstudio_read.py", "server", label_studio_server.url, label_studio_server.token,
                    tmp_path / "label_config.xml", tmp_path / "tasks.json")
    assert read["task_count"] == len(images)
    check_label_studio_read(images, read, prefix)
    assert {t["model_version"] for t in read["tasks"]} == {"dogs@3"}
