from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from segpipe.api.upload_stream import safe_stem
from segpipe.settings import Settings
from tests.api.conftest import ANNOTATOR, ENGINEER


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (40, 30), noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    pixels = (
        rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        if noise
        else np.full((size[1], size[0], 3), 90, np.uint8)
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def upload_folder(settings: Settings) -> Path:
    return settings.roots[0] / "uploads"


def test_upload_then_predict(sqlite_client: TestClient, settings: Settings) -> None:
    files = [
        ("files", ("cat.png", image_bytes("PNG"), "image/png")),
        ("files", ("../../etc/dog photo.JPG", image_bytes("JPEG"), "image/jpeg")),
        ("files", ("cat.jpeg", image_bytes("JPEG"), "application/octet-stream")),  # same stem as cat.png
        ("files", ("C:\\Users\\me\\.hidden.tif", image_bytes("TIFF"), "image/tiff")),
        ("files", ("noext", image_bytes("WEBP"), "image/webp")),
    ]
    r = sqlite_client.post("/uploads", files=files, headers=ENGINEER)
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["images"] == f"uploads/{body['upload_id']}"
    stored = [(f["stored_as"], f["image_key"], f["format"]) for f in body["files"]]
    assert stored == [
        ("cat.png", "cat", "PNG"),
        ("dog_photo.jpg", "dog_photo", "JPEG"),
        ("cat-2.jpg", "cat-2", "JPEG"),
        ("hidden.tif", "hidden", "TIFF"),
        ("noext.webp", "noext", "WEBP"),
    ]
    assert body["files"][0]["width"] == 40 and body["files"][0]["height"] == 30
    folder = upload_folder(settings) / body["upload_id"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(s for s, _, _ in stored)
    # the folder is a valid predict job's images
    job = sqlite_client.post(
        "/jobs", json={"kind": "predict", "config": {"model": "model", "images": body["images"]}}, headers=ENGINEER
    )
    assert job.status_code == 201 and f"images: {folder}" in job.json()["config"]


def test_oversized_file_is_413_and_nothing_is_kept(sqlite_client: TestClient, settings: Settings) -> None:
    big = image_bytes("PNG", size=(800, 800), noise=True)  # ~1.9 MB of noise; the limit is 1 MB
    assert len(big) > settings.max_upload_mb * 2**20
    files = [("files", ("small.png", image_bytes(), "image/png")), ("files", ("big.png", big, "image/png"))]
    r = sqlite_client.post("/uploads", files=files, headers=ENGINEER)
    assert r.status_code == 413
    assert r.json()["error"] == "file 'big.png' is larger than the limit of 1 MB per file"
    assert not any(upload_folder(settings).iterdir())


def test_non_images_are_415_naming_the_file(sqlite_client: TestClient, settings: Settings) -> None:
    for name, content in (
        ("notes.png", b"just some text, named like an image"),
        ("shell.jpg", b"#!/bin/sh\nrm -rf /\n"),
    ):
        files = [("files", ("ok.png", image_bytes(), "image/png")), ("files", (name, content, "image/png"))]
        r = sqlite_client.post("/uploads", files=files, headers=ENGINEER)
        assert r.status_code == 415
        assert r.json()["error"].startswith(f"file {name!r} is not an image")
    # an image Pillow knows but segpipe does not take
    r = sqlite_client.post(
        "/uploads", files=[("files", ("x.ico", image_bytes("ICO", (16, 16)), "image/x-icon"))], headers=ENGINEER
    )
    assert r.status_code == 415 and "is a ICO image" in r.json()["error"]
    r = sqlite_client.post("/uploads", content=b"{}", headers={**ENGINEER, "Content-Type": "application/json"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    assert not any(upload_folder(settings).iterdir())


def test_upload_limits_and_roles(sqlite_client: TestClient, settings: Settings) -> None:
    png = image_bytes()
    assert (
        sqlite_client.post("/uploads", files=[("files", ("a.png", png, "image/png"))], headers=ANNOTATOR).status_code
        == 403
    )
    assert sqlite_client.post("/uploads", files=[("files", ("a.png", png, "image/png"))]).status_code == 401
    r = sqlite_client.post(
        "/uploads", data={"note": "hi"}, files=[("files", ("a.png", png, "image/png"))], headers=ENGINEER
    )
    assert r.status_code == 422 and "form field 'note' is not a file" in r.json()["error"]
    r = sqlite_client.post(
        "/uploads", content=b"--b--\r\n", headers={**ENGINEER, "Content-Type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 422 and "holds no files" in r.json()["error"]
    files = [("files", (f"{i}.png", png, "image/png")) for i in range(settings.max_upload_files + 1)]
    r = sqlite_client.post("/uploads", files=files, headers=ENGINEER)
    assert (
        r.status_code == 413
        and r.json()["error"] == f"too many files in one upload: at most {settings.max_upload_files}"
    )


def test_safe_stem() -> None:
    assert safe_stem("../../etc/passwd") == "passwd"
    assert safe_stem("..\\..\\boot.ini") == "boot"
    assert safe_stem(".bashrc") == "bashrc"
    assert safe_stem("ça va?.png") == "a_va"
    assert safe_stem("...") == "image"
    assert len(safe_stem("x" * 500 + ".png")) == 100
