"""Latency of the annotators' side: the review gallery page and the Label Studio ML backend's /predict.

    python bench/review_latency.py [--quick] [--requests N]

Setup: a fresh PostgreSQL database (``SEGPIPE_BENCH_PG_URL``, as bench/masks_api.py) holds one succeeded
predict job of model version ``bench@1`` with 100,000 stored masks (10,000 images × 10; ``--quick``:
10,000 over 1,000), realistic compressed RLE on 480×640 images; uvicorn serves the API on loopback.

1. Gallery page (``GET /ui/jobs/{id}?page=N``, 48 images a page, random pages, session cookie) against
   ``GET /jobs/{id}`` (one job row through the same stack) as the baseline, interleaved A B A B.
2. ``POST /ls/bench@production/predict`` with one task whose image was already predicted by that version
   (answered from the store: image read + hashed, two indexed queries, RLE → Label Studio brush RLE)
   against ``GET /images/{key}/masks?job=…`` (the same image's stored RLE) as the baseline.
3. Predict latency on CPU, cached vs uncached: a tiny U-Net version ``tiny@1`` and a real worker on the
   ``interactive`` queue (Redis ``SEGPIPE_BENCH_REDIS_URL``, default db 12, flushed): a never-seen image
   (uncached: queued job, worker loads the checkpoint, predicts, stores) vs the same image again (cached).

One client, sequential requests (latency, not throughput); medians and p99 in ms; ratio = median / the
baseline's median. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.masks_api import IMAGE_H, IMAGE_W, fresh_database, machine, mask_pool  # noqa: E402
from segpipe.data.categories import CategoryMap  # noqa: E402
from segpipe.processes import stop_process  # noqa: E402
from segpipe.stores import Stores  # noqa: E402
from segpipe.stores.models import Prediction, PredictionImage  # noqa: E402
from tests.support.live_server import live_api  # noqa: E402

REDIS_URL = os.environ.get("SEGPIPE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TOKEN = "bench-token"
CLASSES = [(i, f"class{i}") for i in range(1, 11)]
LABEL_CONFIG = ("<View><Image name='image' value='$image'/><BrushLabels name='label' toName='image'>"
                + "".join(f"<Label value='{n}'/>" for _i, n in CLASSES) + "</BrushLabels></View>")
FILES = 200  # images that exist as files (the /ls/predict samples)


def populate(stores: Stores, images_dir: Path, images: int, per_image: int) -> str:
    rng = np.random.default_rng(0)
    pool = mask_pool(rng)
    run = stores.artifacts.root / "models" / "bench" / "run"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"not loaded: only stored predictions are served")
    CategoryMap(ids=tuple(i for i, _ in CLASSES), names=tuple(n for _, n in CLASSES)).save(run / "categories.json")
    stores.versions.register("bench", "instance", "{}", checkpoint="models/bench/run/best.pt")
    stores.versions.promote("bench", 1)
    job = stores.jobs.create("predict", f"model: bench@production\nimages: {images_dir}\n", "gpu")
    stores.jobs.claim(job.id, "bench", lease_seconds=3600)
    stores.jobs.record_model(job.id, "bench", 1)
    now = stores.jobs.now()
    for start in range(0, images, 1000):
        keys = [f"img{i:06d}" for i in range(start, min(start + 1000, images))]
        markers = [{"job_id": job.id, "image_key": k, "instances": per_image, "height": IMAGE_H, "width": IMAGE_W,
                    "created_at": now} for k in keys]
        rows = []
        for key in keys:
            for instance in range(per_image):
                rle, bbox = pool[int(rng.integers(len(pool)))]
                cid, name = CLASSES[int(rng.integers(len(CLASSES)))]
                rows.append({"job_id": job.id, "image_key": key, "instance": instance, "category_id": cid,
                             "category_name": name, "score": float(rng.uniform(0.3, 1.0)), "bbox": bbox, "rle": rle,
                             "height": IMAGE_H, "width": IMAGE_W})
        with stores.db.write() as session:
            session.execute(insert(PredictionImage), markers)
            session.execute(insert(Prediction), rows)
    stores.jobs.finish(job.id, "bench", "succeeded")
    for i in range(min(FILES, images)):
        noise = np.random.default_rng(i).integers(0, 255, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
        Image.fromarray(noise).save(images_dir / f"img{i:06d}.png", compress_level=1)
    return job.id


def stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2), "n": len(ordered)}


def timed(call: Any) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}")
    return elapsed


def interleave(a: Any, b: Any, n: int, warmup: int = 5) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        timed(a)
        timed(b)
    xs, ys = [], []
    for _ in range(n):
        xs.append(timed(a))
        ys.append(timed(b))
    return xs, ys


def stored_side(base: str, job_id: str, images: int, n: int) -> dict[str, Any]:
    rnd = random.Random(1)
    per = 48
    pages = (images + per - 1) // per
    with httpx.Client(base_url=base, timeout=60) as client:
        client.post("/ui/login", data={"token": TOKEN, "next": "/ui/jobs"}, headers={"Origin": base})
        gallery, job_row = interleave(lambda: client.get(f"/ui/jobs/{job_id}", params={"page": rnd.randint(1, pages)}),
                                      lambda: client.get(f"/jobs/{job_id}"), n)
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def ls_predict() -> httpx.Response:
            key = f"img{rnd.randrange(min(FILES, images)):06d}"
            return client.post("/ls/bench@production/predict", headers=auth, json={
                "tasks": [{"id": 1, "data": {"image": f"/data/local-files/?d={key}.png"}}], "label_config": LABEL_CONFIG})

        def masks() -> httpx.Response:
            return client.get(f"/images/img{rnd.randrange(images):06d}/masks", params={"job": job_id}, headers=auth)

        predict, mask_read = interleave(ls_predict, masks, n)
    return {"gallery_page": stats(gallery), "job_row_baseline": stats(job_row),
            "gallery_ratio": round(statistics.median(gallery) / statistics.median(job_row), 2),
            "ls_predict_stored": stats(predict), "masks_baseline": stats(mask_read),
            "ls_predict_ratio": round(statistics.median(predict) / statistics.median(mask_read), 2)}


def train_tiny(root: Path, artifacts: Path) -> Path:
    import torch

    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.runner import train

    coco = make_shapes_coco(root / "shapes", n_images=4, size=(64, 64), seed=2)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    torch.set_num_threads(1)
    result = train(from_dict({
        "task": "binary", "data": {"train": source, "val": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]},
        "output_dir": str(artifacts / "models" / "tiny"),
        "train": {"device": "cpu", "epochs": 1, "batch_size": 2, "image_size": 64, "scheduler": "none"}}),
        show_progress=False)  # fmt: skip
    return Path(result.best_checkpoint)


def worker_side(db_url: str, root: Path, data: Path, artifacts: Path, stores: Stores, rounds: int) -> dict[str, Any]:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.RedisError as exc:
        return {"skipped": f"Redis at {REDIS_URL} unreachable ({exc})"}
    checkpoint = train_tiny(root, artifacts)
    stores.versions.register("tiny", "binary", "{}", checkpoint=checkpoint.relative_to(artifacts).as_posix())
    stores.versions.promote("tiny", 1)
    env = {"SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": REDIS_URL, "SEGPIPE_DATA_ROOTS": str(data),
           "SEGPIPE_ARTIFACT_ROOT": str(artifacts), "SEGPIPE_HOME": str(root / "home"),
           "SEGPIPE_TOKENS": f"{TOKEN}:engineer", "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(data),
           "SEGPIPE_LS_PREDICT_TIMEOUT": "120"}
    worker_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with (root / "worker.log").open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--queues", "interactive"],
                                  env=worker_env, stdout=out, stderr=subprocess.STDOUT)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    uncached, cached = [], []
    try:
        with live_api(env, root / "uvicorn-worker.log") as base, httpx.Client(base_url=base, timeout=180) as client:
            for i in range(rounds + 1):  # the first round warms the worker (imports torch) and is dropped
                name = f"fresh{i}.png"
                pixels = np.random.default_rng(1000 + i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(data / name)
                body = {"tasks": [{"id": i, "data": {"image": f"/data/local-files/?d={name}"}}]}
                first = timed(lambda body=body: client.post("/ls/tiny@production/predict", headers=auth, json=body))
                again = timed(lambda body=body: client.post("/ls/tiny@production/predict", headers=auth, json=body))
                if i:
                    uncached.append(first)
                    cached.append(again)
    finally:
        stop_process(worker, grace=30)
    return {"uncached": stats(uncached), "cached": stats(cached),
            "uncached_over_cached": round(statistics.median(uncached) / statistics.median(cached), 1),
            "image": "64x64", "model": "U-Net resnet18 depth 3 (binary)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 masks over 1,000 images, fewer requests")
    parser.add_argument("--requests", type=int, default=None, help="requests per side (default 300; quick 60)")
    parser.add_argument("--rounds", type=int, default=None, help="uncached/cached predict rounds (default 8; quick 3)")
    args = parser.parse_args()
    images = 1000 if args.quick else 10_000
    n = args.requests or (60 if args.quick else 300)
    rounds = args.rounds or (3 if args.quick else 8)
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as url:
        root = Path(tmp)
        data, artifacts = root / "data", root / "artifacts"
        (data / "batch").mkdir(parents=True)
        db_url = url.render_as_string(hide_password=False)
        stores = Stores.open(db_url, artifacts)
        started = time.perf_counter()
        job_id = populate(stores, data / "batch", images, 10)
        setup_s = time.perf_counter() - started
        env = {"SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{root / 'broker.db'}",
               "SEGPIPE_DATA_ROOTS": str(data), "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
               "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_TOKENS": f"{TOKEN}:annotator",
               "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(data / "batch")}
        with live_api(env, root / "uvicorn.log") as base:
            stored = stored_side(base, job_id, images, n)
        computed = worker_side(db_url, root, data, artifacts, stores, rounds)
        stores.close()
    summary = {"bench": "review_latency", "masks": images * 10, "images": images, "requests": n,
               "setup_s": round(setup_s, 1), **stored, "predict_cpu": computed,
               "machine": {**machine(), "device": "cpu", "torch_threads": 1}}
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, key in (("gallery page (48 images)", "gallery_page"), ("  baseline GET /jobs/{id}", "job_row_baseline"),
                       ("/ls/predict, stored", "ls_predict_stored"), ("  baseline GET masks", "masks_baseline")):
        print(f"{label:34}{stored[key]['p50_ms']:>10}{stored[key]['p99_ms']:>10}")
    if "uncached" in computed:
        for label, key in (("/ls/predict uncached (worker)", "uncached"), ("/ls/predict cached", "cached")):
            print(f"{label:34}{computed[key]['p50_ms']:>10}{computed[key]['p99_ms']:>10}")
    print(f"ratios: gallery/job row {stored['gallery_ratio']}, ls predict/masks {stored['ls_predict_ratio']}, "
          f"uncached/cached {computed.get('uncached_over_cached')}  ({images * 10} masks)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
