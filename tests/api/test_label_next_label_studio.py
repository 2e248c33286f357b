"""``GET /jobs/{id}/label-next?format=label-studio`` imported into a REAL Label Studio server: the tasks come in
rank order (Label Studio numbers them in file order and lists them by that number), each with its rank and
uncertainty in its data and segpipe's prediction, its brush masks decoding to the stored ones pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from segpipe.masks.encode import rle_to_mask
from segpipe.masks.formats.label_studio import labeling_config
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR
from tests.api.test_label_next import RANK_ORDER, ROWS, UNCERTAIN, ranked_job
from tests.masks.formats.test_tool_imports import _bits
from tests.support.labelstudio_server import LabelStudioServer
from tests.tools.venvs import run_tool

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("label-studio")]


def test_label_next_tasks_import_in_rank_order(label_studio_server: LabelStudioServer, sqlite_client: TestClient,
                                               sqlite_stores: Stores, predict_inputs: Path, tmp_path: Path) -> None:
    job_id = ranked_job(sqlite_stores, predict_inputs)
    prefix = "/data/local-files/?d=batch/"
    r = sqlite_client.get(f"/jobs/{job_id}/label-next", headers=ANNOTATOR,
                          params={"format": "label-studio", "top": 3, "image_url_prefix": prefix, "score_threshold": 0})
    assert r.status_code == 200, r.text
    (tmp_path / "tasks.json").write_bytes(r.content)
    (tmp_path / "label_config.xml").write_text(labeling_config("instance", [(7, "cat"), (9, "dog")]))

    read = run_tool("label-studio", "labelstudio_read.py", "server", label_studio_server.url, label_studio_server.token,
                    tmp_path / "label_config.xml", tmp_path / "tasks.json")
    assert read["errors"] == []
    tasks = read["tasks"]
    assert [t["key"] for t in tasks] == RANK_ORDER, "Label Studio lists the tasks in rank order"
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks)
    assert [t["image"] for t in tasks] == [f"{prefix}{key}.png" for key in RANK_ORDER]
    assert [(t["data"]["segpipe_rank"], t["data"]["segpipe_uncertainty"]) for t in tasks] == [
        (i + 1, UNCERTAIN[key]) for i, key in enumerate(RANK_ORDER)], "rank and uncertainty: columns to sort by"
    for task, key in zip(tasks, RANK_ORDER, strict=True):
        assert task["model_version"] == str(predict_inputs / "model")  # the model the job names
        brushes = [region for region in task["regions"] if region["type"] == "brushlabels"]
        assert [b["label"] for b in brushes] == ["cat"] * len(ROWS[key])
        for region, row in zip(brushes, ROWS[key], strict=True):
            assert region["score"] == row["score"]
            np.testing.assert_array_equal(_bits(region), rle_to_mask(row["rle"]))
