"""Label Studio ML backend latency while a training job runs on the same worker.

    python bench/ls_busy_latency.py [--quick] [--requests N]

A plain ``segpipe worker`` (default queues: gpu, cpu, interactive; interactive in its reserved process)
on Redis (``SEGPIPE_BENCH_REDIS_URL``, default db 12, flushed), SQLite store, uvicorn on loopback, a tiny
binary U-Net ``tiny@1``. Each request is ``POST /ls/tiny@production/predict`` with one never-seen 64×64
image (so a queued interactive job answers it: what a "retrieve predictions" on a new task costs).

1. idle: no other job;
2. busy: while a training job (the same U-Net, 64 px, thousands of steps) runs on the worker;
3. busy without the slot (``segpipe worker --no-interactive-slot``, the old default with interactive
   added): a few requests with a short timeout, to show they wait for the training job instead.

One client, sequential requests; p50 / p99 in ms. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.masks_api import machine  # noqa: E402
from bench.review_latency import stats  # noqa: E402
from segpipe.processes import stop_process  # noqa: E402
from segpipe.stores import Stores  # noqa: E402
from tests.support.live_server import live_api  # noqa: E402

REDIS_URL = os.environ.get("SEGPIPE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _train_tiny(root: Path, artifacts: Path) -> Path:
    """A tiny binary U-Net; its run folder is where a training job leaves it (jobs/<id>/run)."""
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
        "output_dir": str(artifacts / "jobs" / "tiny-train" / "run"),
        "train": {"device": "cpu", "epochs": 1, "batch_size": 2, "image_size": 64, "scheduler": "none"}}),
        show_progress=False)  # fmt: skip
    assert result.best_checkpoint is not None
    return Path(result.best_checkpoint)


def _train_spec(root: Path) -> dict[str, Any]:
    from segpipe.data.synthetic import make_shapes_coco

    coco = make_shapes_coco(root / "train-shapes", n_images=16, size=(64, 64), seed=5)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    return {"task": "binary", "data": {"train": source, "val": source, "num_workers": 0}, "augment": {"preset": "none"},
            "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]},
            "train": {"device": "cpu", "epochs": 2000, "batch_size": 4, "image_size": 64, "scheduler": "none"}}


def _requests(client: httpx.Client, data: Path, start: int, n: int, timeout: float) -> tuple[list[float], int]:
    """``n`` sequential never-seen images; (latencies in ms of the answered ones, count not answered)."""
    times, failed = [], 0
    for i in range(start, start + n):
        name = f"fresh{i}.png"
        pixels = np.random.default_rng(1000 + i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / name)
        body = {"tasks": [{"id": i, "data": {"image": f"/data/local-files/?d={name}"}}]}
        began = time.perf_counter()
        response = client.post("/ls/tiny@production/predict", headers=AUTH, json=body, timeout=timeout + 30)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code == 200:
            times.append(elapsed)
        else:
            failed += 1
    return times, failed


def _warm_up(client: httpx.Client, data: Path, index: int, log: Path, limit: float = 600) -> None:
    """Ask for one image until it is answered: the worker imports torch and loads the model first, which
    may take longer than the phase's timeout (then the retry finds the stored result)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        _, failed = _requests(client, data, index, 1, timeout=limit)
        if not failed:
            return
        time.sleep(2)
    raise RuntimeError(f"the warm-up request was never answered: see {log}")


def _phase(root: Path, env: dict[str, str], data: Path, worker_args: list[str], busy: bool, n: int, start: int,
           timeout: float, label: str) -> dict[str, Any]:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()  # nothing left from the last phase
    worker_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                  "SEGPIPE_LS_PREDICT_TIMEOUT": str(timeout)}
    with (root / f"worker-{label}.log").open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", *worker_args], env=worker_env,
                                  stdout=out, stderr=subprocess.STDOUT)
    train_id = None
    try:
        with live_api({**env, "SEGPIPE_LS_PREDICT_TIMEOUT": str(timeout)}, root / f"uvicorn-{label}.log") as base, \
                httpx.Client(base_url=base, timeout=timeout + 30) as client:
            _warm_up(client, data, start + 10_000, root / f"worker-{label}.log")
            if busy:
                made = client.post("/jobs", headers=AUTH, json={"kind": "train", "config": _train_spec(root)})
                made.raise_for_status()
                train_id = made.json()["id"]
                while client.get(f"/jobs/{train_id}", headers=AUTH).json()["state"] != "running":
                    time.sleep(0.5)
                time.sleep(3)  # into its steps
            times, failed = _requests(client, data, start, n, timeout)
            still = client.get(f"/jobs/{train_id}", headers=AUTH).json()["state"] if train_id else None
            if train_id:  # cancel it and let it stop, so the next phase's worker does not inherit it
                client.post(f"/jobs/{train_id}/cancel", headers=AUTH)
                deadline = time.monotonic() + 120
                while (client.get(f"/jobs/{train_id}", headers=AUTH).json()["state"] in ("queued", "running")
                       and time.monotonic() < deadline):
                    time.sleep(1)
    finally:
        stop_process(worker, grace=60)
    out: dict[str, Any] = {**(stats(times) if times else {"n": 0}), "not_answered": failed,
                           "timeout_s": timeout, "training_state_after": still}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 requests per phase instead of 40")
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    n = args.requests or (10 if args.quick else 40)
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
    with tempfile.TemporaryDirectory(prefix="segpipe-bench-busy-") as tmp:
        root = Path(tmp)
        data, artifacts = root / "data", root / "artifacts"
        data.mkdir()
        db_url = f"sqlite:///{root / 'segpipe.db'}"
        stores = Stores.open(db_url, artifacts)
        checkpoint = _train_tiny(root, artifacts)
        stores.versions.register("tiny", "binary", "{}", checkpoint=checkpoint.relative_to(artifacts).as_posix())
        stores.versions.promote("tiny", 1)
        env = {"SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": REDIS_URL,
               "SEGPIPE_DATA_ROOTS": f"{data},{root / 'train-shapes'}", "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
               "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_TOKENS": f"{TOKEN}:engineer",
               "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(data)}
        results = {
            "idle": _phase(root, env, data, [], busy=False, n=n, start=0, timeout=60, label="idle"),
            "busy": _phase(root, env, data, [], busy=True, n=n, start=1000, timeout=60, label="busy"),
            "busy_no_slot": _phase(root, env, data, ["--no-interactive-slot"], busy=True, n=min(n, 3), start=2000,
                                   timeout=15, label="noslot"),
        }
        stores.close()
    print(f"{'phase':<14}{'n':>4}{'p50 ms':>10}{'p99 ms':>10}{'not answered':>14}  training after")
    for name, r in results.items():
        print(f"{name:<14}{r.get('n', 0):>4}{r.get('p50_ms', float('nan')):>10.0f}{r.get('p99_ms', float('nan')):>10.0f}"
              f"{r['not_answered']:>14}  {r['training_state_after']}")
    ratio = (round(results["busy"]["p50_ms"] / results["idle"]["p50_ms"], 2)
             if results["busy"].get("p50_ms") and results["idle"].get("p50_ms") else None)
    print(json.dumps({"bench": "ls_busy_latency", "machine": {**machine(), "device": "cpu"}, "results": results,
                      "busy_over_idle_p50": ratio, "image": "64x64", "model": "U-Net resnet18 depth 3 (binary)"}))


if __name__ == "__main__":
    main()
