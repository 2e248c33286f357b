"""Sharded prediction across workers, and the worker's model cache.

    python bench/scale_out.py [--quick] [--images N] [--shard-size N] [--rounds N] [--size PX]
                              [--store sqlite|postgresql] [--max-workers 2|3]

One predict job over ``--images`` images of ``--size`` px (64 by default; 256 makes the model do real
work; a tiny binary U-Net, trained once in this process) is drained by 1, 2 and 3 real ``segpipe
worker`` processes (Redis broker, one SQLite store — or a fresh PostgreSQL database with ``--store
postgresql`` — one torch thread each). "Where the time goes" splits each run from the store's own
timestamps: the parent's split, the shards' work, the workers' waits between shards, the parent's
finish (`phases`). images/s = images / (the parent's ``finished_at`` − ``created_at``), both stamped by
the store. The scaling ratio is against one worker *in the same round*: the configurations run
interleaved (1 2 3, then 3 2 1, …) after a warm-up job per worker set, and the medians are quoted.

Per-shard queue overhead: one worker runs the same job split into shards and as one piece
(``shard_size`` ≥ images); overhead per shard = (sharded − whole) seconds / shards — the message
round trip, the claim, the parent's bookkeeping and the reports of one shard.

Model cache: `segpipe.engine.model_cache` in this process — the median time of a checkpoint load
(what every shard would pay without the cache) against a cache hit, for the tiny model and a
full-depth U-Net/ResNet-34.

The machine is shared (see its load average in the output): with 2 cores, 3 workers cannot scale
linearly, and the figures are ratios for that reason. Redis: ``SEGPIPE_BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/12``; only that database is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, print_table  # noqa: E402
from queue_latency import REDIS_URL, _flush_redis, train_tiny_model  # noqa: E402

TERMINAL = ("succeeded", "failed", "cancelled")


class Cluster:
    """A store, a broker and the worker processes currently running against them."""

    def __init__(self, root: Path, database_url: str | None = None) -> None:
        from segpipe.settings import Settings
        from segpipe.stores import Stores
        from workers.celery_app import create_app

        self.root = root
        home = root / "home"
        self.settings = Settings(home=home, database_url=database_url or f"sqlite:///{home / 'segpipe.db'}",
                                 broker_url=REDIS_URL, data_roots=[root], artifact_root=home / "artifacts")
        _flush_redis()
        self.stores = Stores.from_settings(self.settings)
        self.celery = create_app(self.settings)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
        self.env.update(SEGPIPE_HOME=str(home), SEGPIPE_DATABASE_URL=self.settings.db_url, SEGPIPE_DATA_ROOTS=str(root),
                        SEGPIPE_ARTIFACT_ROOT=str(self.settings.artifacts), SEGPIPE_BROKER_URL=REDIS_URL,
                        OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, n: int) -> None:
        for _ in range(n):
            log = self.root / f"worker-{len(self.workers)}-{time.monotonic_ns()}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--queues", "gpu",
                                         "--reconcile-every", "0"], env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self.workers.append((proc, log))
        for proc, log in self.workers:
            while " ready." not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    raise SystemExit(f"worker died:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        for proc, _ in self.workers:
            proc.terminate()
        for proc, _ in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers = []

    def run(self, model: Path, images: Path, shard_size: int) -> Any:
        from segpipe.service import submit

        spec = {"model": str(model), "images": str(images), "device": "cpu",
                "predict": {"formats": ["png"], "batch_size": 8, "shard_size": shard_size}}
        job_id = submit(self.stores, self.celery, self.settings, "predict", spec, submitted_by="bench").id
        deadline = time.monotonic() + 1800
        while (job := self.stores.jobs.get(job_id)).state not in TERMINAL:
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} did not finish: {job.progress}")
            time.sleep(0.05)
        if job.state != "succeeded":
            raise SystemExit(f"job {job_id} {job.state}: {job.error}")
        return job


def seconds(job: Any) -> float:
    return (job.finished_at - job.created_at).total_seconds()


def phases(stores: Any, job: Any, workers: int) -> dict[str, float]:
    """Where one sharded job's wall time went, from the store's own timestamps: the parent's split
    (submit → first shard starts), the shards' work (summed over shards, then per worker), the time
    workers sat between shards (message round trip, claim, model-cache lookup: wall × workers − work,
    within the shards' span) and the parent's finish (last shard ends → parent ends: re-queue, export)."""
    shards = [c for c in stores.shards.children(job.id) if c.started_at and c.finished_at]
    if not shards:
        return {}
    first = min(c.started_at for c in shards)
    last = max(c.finished_at for c in shards)
    busy = sum((c.finished_at - c.started_at).total_seconds() for c in shards)
    span = (last - first).total_seconds()
    return {"split_s": (first - job.created_at).total_seconds(), "shard_work_s": busy / workers,
            "between_shards_s": max(span * workers - busy, 0.0) / workers,
            "finish_s": (job.finished_at - last).total_seconds(), "wall_s": seconds(job),
            "per_shard_s": busy / len(shards)}


def database(kind: str) -> tuple[str | None, Any]:
    """``sqlite``: None (the cluster's own file). ``postgresql``: a fresh database on the test server
    (``SEGPIPE_TEST_PG_URL``) and the function that drops it."""
    if kind == "sqlite":
        return None, lambda: None
    from tests.support.postgres import create_pg_database, drop_pg_database

    url = create_pg_database()
    return url.render_as_string(hide_password=False), lambda: drop_pg_database(url)


def model_cache_figures(root: Path, tiny: Path, rounds: int) -> list[list[Any]]:
    import torch

    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.model_cache import ModelCache
    from segpipe.engine.predict import load_model, resolve_checkpoint
    from segpipe.engine.runner import train

    coco = make_shapes_coco(root / "cache-shapes", n_images=4, size=(32, 32), seed=1)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    r34 = train(from_dict({
        "task": "binary", "data": {"train": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": {"name": "unet", "encoder": "resnet34"},
        "train": {"device": "cpu", "epochs": 1, "batch_size": 4, "image_size": 32, "scheduler": "none"},
        "output_dir": str(root / "r34"),
    }), show_progress=False).run_dir  # fmt: skip
    torch.set_num_threads(1)
    rows = []
    for name, ref in (("unet-resnet18-d3 (tiny)", tiny), ("unet-resnet34", r34)):
        cache = ModelCache(capacity=2)
        cache.get(ref, "cpu")
        loads, hits = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            load_model(ref, "cpu")
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            cache.get(ref, "cpu")
            hits.append(time.perf_counter() - start)
        size_mb = resolve_checkpoint(ref).stat().st_size / 2**20
        rows.append([name, f"{size_mb:.1f}", f"{statistics.median(loads) * 1000:.1f}",
                     f"{statistics.median(hits) * 1000:.2f}", f"{statistics.median(loads) / statistics.median(hits):.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="240 images, 1 round")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image side in px (256: the model does real work)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-workers", type=int, default=3, choices=(2, 3))
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 240, 1
    from segpipe.data.synthetic import make_shapes_coco

    with tempfile.TemporaryDirectory(prefix="segpipe-scale-") as tmp:
        root = Path(tmp)
        tiny = train_tiny_model(root / "tiny")
        size = (args.size, args.size)
        images = make_shapes_coco(root / "images", n_images=args.images, size=size, seed=3, crowd=False).images
        warm = make_shapes_coco(root / "warm", n_images=12, size=(32, 32), seed=4, crowd=False).images
        db_url, drop_db = database(args.store)
        cluster = Cluster(root, db_url)
        counts = tuple(range(1, args.max_workers + 1))
        rates: dict[int, list[float]] = {n: [] for n in counts}
        breakdown: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
        whole: list[float] = []
        sharded_one: list[float] = []
        try:
            for r in range(args.rounds):
                for n in (counts if r % 2 == 0 else counts[::-1]):
                    cluster.start(n)
                    cluster.run(tiny, warm, shard_size=2)  # every worker imports torch, loads the model
                    job = cluster.run(tiny, images, args.shard_size)
                    rates[n].append(args.images / seconds(job))
                    breakdown[n].append(phases(cluster.stores, job, n))
                    if n == 1:  # the same job as one piece, on the same warm worker
                        sharded_one.append(seconds(job))
                        whole.append(seconds(cluster.run(tiny, images, args.images)))
                    cluster.stop()
        finally:
            cluster.stop()
            cluster.celery.close()
            cluster.stores.close()
            _flush_redis()
            drop_db()
        cache_rows = model_cache_figures(root, tiny, rounds=5 if args.quick else 10)

    shards = -(-args.images // args.shard_size)
    base = statistics.median(rates[1])
    rows = [[n, f"{statistics.median(v):.1f}", f"{statistics.median(v) / base:.2f}"] for n, v in rates.items()]
    overhead = (statistics.median(sharded_one) - statistics.median(whole)) / shards
    info = machine()
    print(f"machine: {info}")
    print_table(f"one predict job, {args.images} images of {args.size} px, shards of {args.shard_size}, "
                f"{args.store} store, Redis broker", ["workers", "images/s", "× one worker"], rows)
    keys = ("wall_s", "split_s", "shard_work_s", "between_shards_s", "finish_s", "per_shard_s")
    spent = {n: {k: statistics.median(b[k] for b in v if b) for k in keys} for n, v in breakdown.items() if any(v)}
    print_table("where the time goes (medians, seconds; work and waits per worker)", ["workers", *keys],
                [[n, *(f"{d[k]:.2f}" for k in keys)] for n, d in spent.items()])
    print_table("one worker: sharded vs one piece", ["shards", "sharded s", "whole s", "overhead/shard s"],
                [[shards, f"{statistics.median(sharded_one):.2f}", f"{statistics.median(whole):.2f}", f"{overhead:.3f}"]])
    print_table("model cache (in process, 1 torch thread)", ["model", "MB", "load ms", "hit ms", "load/hit"], cache_rows)
    print(json.dumps({"bench": "scale_out", "images": args.images, "size": args.size, "store": args.store,
                      "shard_size": args.shard_size, "phases": spent,
                      "images_per_s": {n: round(statistics.median(v), 2) for n, v in rates.items()},
                      "scaling_vs_1": {n: round(statistics.median(v) / base, 3) for n, v in rates.items()},
                      "overhead_per_shard_s": round(overhead, 4),
                      "model_load_ms": {r[0]: float(r[2]) for r in cache_rows},
                      "cache_hit_ms": {r[0]: float(r[3]) for r in cache_rows}, "machine": info}))


if __name__ == "__main__":
    main()
