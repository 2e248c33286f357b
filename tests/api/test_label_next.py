"""GET /jobs/{id}/label-next: a predict job's most uncertain images, near-duplicates kept out."""

from __future__ import annotations

from fastapi.testclient import TestClient

from segpipe.stores import Stores
from segpipe.stores.predictions import PredictedImage
from tests.api.conftest import ANNOTATOR


def test_most_uncertain_first_without_near_duplicates(client: TestClient, stores: Stores) -> None:
    job = stores.jobs.create("predict", "{}", queue="gpu")
    twin = 0x0F0F_0F0F_0F0F_0F0F
    stores.predictions.write_images(job.id, [
        PredictedImage("sure", [], 8, 8, 0.05, f"{0xFFFF_0000_FFFF_0000:016x}"),
        PredictedImage("unsure", [], 8, 8, 0.9, f"{twin:016x}"),
        PredictedImage("unsure-copy", [], 8, 8, 0.8, f"{twin ^ 0b11:016x}"),  # 2 bits apart: a near-duplicate
        PredictedImage("middle", [], 8, 8, 0.5, f"{0x1234_5678_9ABC_DEF0:016x}"),
        PredictedImage("old", [], 8, 8),  # stored before uncertainty existed: not ranked
    ])
    r = client.get(f"/jobs/{job.id}/label-next?top=3", headers=ANNOTATOR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(i["rank"], i["image_key"]) for i in body["images"]] == [(1, "unsure"), (2, "middle"), (3, "sure")]
    assert body["near_duplicates"] == [{"image_key": "unsure-copy", "duplicate_of": "unsure"}]
    assert body["scored"] == 4
    plain = client.get(f"/jobs/{job.id}/label-next?top=2&min_distance=0", headers=ANNOTATOR).json()
    assert [i["image_key"] for i in plain["images"]] == ["unsure", "unsure-copy"]
    assert client.get("/jobs/nope/label-next", headers=ANNOTATOR).status_code == 404
    assert client.get(f"/jobs/{job.id}/label-next").status_code == 401
    assert client.get(f"/jobs/{job.id}/label-next?top=0", headers=ANNOTATOR).status_code == 422
