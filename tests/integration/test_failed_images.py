"""A predict job goes on past images it cannot read (issue 22, points 1 and 2), through a real worker.

200 images, 3 of them bad (not an image, an empty file, a 400-megapixel PNG bomb of 48 KB): the job
succeeds with 197 predictions and names the 3 with their reasons in its progress (the API's job view)
and in its exports' summary.json — whole, and split into shards. The worker's peak RSS after the bomb
stays far below what decoding it needs (3 × 20000² bytes = 1.2 GB); before admission one bad image
failed the whole job with the decoder's words.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.conftest import Service, predict_spec
from tests.support.hostile_files import png_bomb

BOMB = (20000, 20000)
GOOD = 197


def _images(folder: Path) -> Path:
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(GOOD):
        cv2.imwrite(str(images / f"img{i:03d}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (images / "bad-text.png").write_bytes(b"this is not an image, whatever its name says")
    (images / "bad-empty.png").write_bytes(b"")
    png_bomb(images / "bad-bomb.png", *BOMB)
    return images


def _memory_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak resident set since start or the last reset) or ``VmRSS`` of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ≥ 4.0: write 5 to clear_refs; needs the right
    to write there, as root or the process's owner)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.parametrize("shard_size", [250, 64], ids=["whole", "sharded"])
def test_predict_job_skips_and_names_unreadable_images(svc: Service, tiny_model: Path, shard_size: int) -> None:
    images = _images(svc.data_dir("failed-images"))
    assert svc.main is not None
    pid = svc.main.pid
    reset = _reset_peak(pid)
    before_mb = _memory_mb(pid, "VmRSS" if reset else "VmHWM")
    job_id = svc.submit("predict", predict_spec(tiny_model, images, formats=["coco-results"], batch_size=8,
                                                shard_size=shard_size))
    job = svc.wait_done(job_id, timeout=600)

    progress = job["progress"]
    failed = {f["image"]: f["reason"] for f in progress["failed_images"]}
    assert progress["images_failed"] == 3 and set(failed) == {"bad-text", "bad-empty", "bad-bomb"}, progress
    assert "cannot decode image" in failed["bad-text"] and "cannot decode image" in failed["bad-empty"]
    assert failed["bad-bomb"] == ("image is 400.0 megapixels, over the 40-megapixel limit "
                                  "(SEGPIPE_MAX_IMAGE_MEGAPIXELS)")
    assert svc.stores.predictions.count_images(job_id) == GOOD
    assert progress["images_done"] == GOOD if shard_size == 250 else progress["images_done"] >= GOOD

    summary_path = svc.job_dir(job_id) / "predictions" / "summary.json"
    assert job_id and "summary.json" in svc.stores.jobs.get(job_id).artifacts
    summary = json.loads(summary_path.read_text())
    assert summary["images_predicted"] == GOOD and summary["images_failed"] == 3
    assert {f["image"]: f["reason"] for f in summary["failed_images"]} == failed
    results = json.loads((svc.job_dir(job_id) / "predictions" / "predictions.json").read_text())
    assert not {r["image_id"] for r in results} & set(failed)

    # the bomb never got decoded: the worker's peak memory during the job grew far less than the 1.2 GB a
    # decode needs (the solo pool runs the job in the worker process itself)
    decoded_mb = 3 * BOMB[0] * BOMB[1] / 2**20
    peak_mb = _memory_mb(pid, "VmHWM")
    print(f"\nworker {pid}: RSS {before_mb:.0f} MB before the job, peak {peak_mb:.0f} MB during it "
          f"(+{peak_mb - before_mb:.0f} MB; peak reset before: {reset}); decoding the bomb needs {decoded_mb:.0f} MB")
    assert peak_mb - before_mb < decoded_mb / 2, (before_mb, peak_mb)
