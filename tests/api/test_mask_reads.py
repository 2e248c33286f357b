"""The masks endpoint's single-statement read must answer exactly what `PredictionStore.for_image` answers."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from segpipe.api.app import create_app
from segpipe.api.mask_reads import ImageMaskReader
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, H, W, box_mask, claimed_job, finish, rows_for


def test_reader_agrees_with_the_prediction_store(stores: Stores) -> None:
    reader = ImageMaskReader(stores.db)
    jobs = [claimed_job(stores) for _ in range(4)]
    for n, job_id in enumerate(jobs):
        stores.predictions.write_image(job_id, "shared", rows_for([box_mask(0, 4 + i, 0, 9) for i in range(n + 1)]))
        stores.predictions.write_image(job_id, f"only-{n}", rows_for([box_mask(1, 5, 1, 5)]))
    # a box-only detection row and a classification row: no mask, no box
    stores.predictions.write_image(
        jobs[0],
        "nomask",
        [
            {
                "category_id": 3,
                "category_name": "car",
                "score": 0.8,
                "bbox": [1.0, 2.0, 3.0, 4.0],
                "rle": None,
                "height": H,
                "width": W,
            },
            {"category_id": 4, "category_name": None, "score": 0.5, "bbox": None, "rle": None, "height": H, "width": W},
        ],
    )
    stores.predictions.write_image(jobs[1], "empty", [], height=H, width=W)
    finish(stores, jobs[0])
    finish(stores, jobs[1])
    finish(stores, jobs[2], "failed")  # jobs[3] keeps running
    for key in ("shared", "only-0", "only-1", "only-2", "only-3", "nomask", "empty", "missing"):
        for job_id in (None, *jobs):
            expected = stores.predictions.for_image(key, job_id=job_id)
            found = reader.read(key, job_id)
            got = found.rows() if found is not None else []
            assert got == expected, (key, job_id)
            if expected:
                assert found is not None and found.job_id == expected[0].job_id
                document = orjson.loads(found.to_json())
                assert [i["rle"] for i in document["instances"]] == [r.rle for r in expected]
                assert [i["bbox"] for i in document["instances"]] == [r.bbox for r in expected]
    # processed but empty is not "missing"
    empty = reader.read("empty")
    assert (
        empty is not None
        and empty.job_id == jobs[1]
        and empty.instances == []
        and (empty.height, empty.width) == (H, W)
    )
    assert reader.read("missing") is None
    assert reader.read("only-2") is None  # only a failed job has it


def test_app_opening_its_own_stores(stores: Stores, settings: Settings) -> None:
    """The deployed path: create_app opens (and at shutdown closes) the stores named by the settings."""
    url = stores.db.engine.url.render_as_string(hide_password=False)
    own = settings.model_copy(update={"database_url": url, "artifact_root": stores.artifacts.root})
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "img", rows_for([box_mask(2, 9, 2, 9)]))
    finish(stores, job_id)
    app = create_app(own)
    with TestClient(app) as client:
        assert client.get("/health").json()["store"]["ok"] is True
        body = client.get("/images/img/masks", headers=ANNOTATOR).json()
        assert body["job_id"] == job_id and len(body["instances"]) == 1
    assert app.state.ctx.stores is not stores


@pytest.mark.integration
def test_reader_survives_the_server_dropping_its_connections(pg_stores: Stores) -> None:
    stores = pg_stores
    job_id = claimed_job(stores)
    stores.predictions.write_image(job_id, "img", rows_for([box_mask(2, 9, 2, 9)]))
    reader = ImageMaskReader(stores.db, pool_size=2)
    try:
        assert reader.read("img", job_id) is not None  # a connection is now pooled, and never pinged
        with stores.db.engine.connect() as conn:  # as a server restart would: end the reader's sessions
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        found = reader.read("img", job_id)
        assert found is not None and len(found.instances) == 1
    finally:
        reader.close()
