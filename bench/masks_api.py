"""Requests/s and latency of ``GET /images/{key}/masks`` (RLE JSON) against the real server.

    python bench/masks_api.py [--quick] [--repeat N] [--workers 1 2] [--connections 32] [--seconds 10]

A fresh PostgreSQL database (``SEGPIPE_BENCH_PG_URL``, default the local server's ``postgres``
database as admin) gets 100,000 predicted instances over 10,000 images (``--quick``: 10,000 over
1,000) of one succeeded predict job, with realistic compressed RLE strings (ellipses on 480×640
images). uvicorn serves ``segpipe.api.app:create_app`` on 127.0.0.1 (a free port) with 1 and 2 worker
processes, and random images' masks are fetched without a ``job`` parameter (so the server also
picks the latest succeeded job, the common case), two ways per run:

- max throughput: a closed loop over N connections (``wrk``, Debian package ``wrk``; without it a
  minimal asyncio client), i.e. requests/s at saturation, where latency is mostly queueing;
- latency at a fixed rate (``--rate``, default 500/s): an open loop, each request due at its slot
  and its latency counted from then, so a stalled server cannot hide slow requests by delaying the
  next ones (coordinated omission).

The database is dropped at the end.

Prints a table and one JSON line. The load generator runs on the same machine as the server, so
on a small machine they compete for cores: the figures are a floor, and noisy when others run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import URL

from segpipe.processes import stop_process
from segpipe.stores import Stores
from segpipe.stores.db import normalize_url
from segpipe.stores.models import Prediction, PredictionImage

ADMIN_URL = os.environ.get("SEGPIPE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-token"
IMAGE_H, IMAGE_W = 480, 640
DISTINCT_MASKS = 400  # encoding 100k masks would dominate the setup; rows reuse a pool of real ones

WRK_SCRIPT = r"""
local n = tonumber(os.getenv("BENCH_IMAGES"))
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/images/img%06d/masks", math.random(0, n - 1)))
end
done = function(summary, latency, requests)
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout)
  io.stderr:write("BENCH_RESULT " .. out .. "\n")
end
"""


# -- database -------------------------------------------------------------------------------------


@contextmanager
def fresh_database() -> Iterator[URL]:
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"segpipe_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield normalize_url(ADMIN_URL).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def mask_pool(rng: np.random.Generator) -> list[tuple[dict[str, Any], list[float]]]:
    """(compressed RLE with str counts, bbox) of random ellipses, 10 to 150 px radii."""
    yy, xx = np.mgrid[:IMAGE_H, :IMAGE_W]
    pool = []
    for _ in range(DISTINCT_MASKS):
        cy, cx = rng.uniform(0, IMAGE_H), rng.uniform(0, IMAGE_W)
        ry, rx = rng.uniform(10, 150, size=2)
        mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
        if not mask.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(mask))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        pool.append(({"size": [IMAGE_H, IMAGE_W], "counts": rle["counts"].decode("ascii")}, bbox))
    return pool


def populate(stores: Stores, images: int, per_image: int, seed: int = 0) -> str:
    """One succeeded predict job with ``images`` × ``per_image`` rows; returns its id."""
    rng = np.random.default_rng(seed)
    pool = mask_pool(rng)
    job = stores.jobs.create("predict", "model: job:bench\nimages: /bench\n", "gpu")
    stores.jobs.claim(job.id, "bench", lease_seconds=3600)
    now = stores.jobs.now()
    batch_images = 1000
    for start in range(0, images, batch_images):
        keys = [f"img{i:06d}" for i in range(start, min(start + batch_images, images))]
        markers = [
            {"job_id": job.id, "image_key": k, "instances": per_image, "height": IMAGE_H, "width": IMAGE_W, "created_at": now}
            for k in keys
        ]
        rows = []
        for key in keys:
            for instance in range(per_image):
                rle, bbox = pool[int(rng.integers(len(pool)))]
                rows.append(
                    {
                        "job_id": job.id,
                        "image_key": key,
                        "instance": instance,
                        "category_id": int(rng.integers(1, 91)),
                        "category_name": "thing",
                        "score": float(rng.uniform(0.3, 1.0)),
                        "bbox": bbox,
                        "rle": rle,
                        "height": IMAGE_H,
                        "width": IMAGE_W,
                    }
                )
        with stores.db.write() as session:
            session.execute(insert(PredictionImage), markers)
            session.execute(insert(Prediction), rows)
    stores.jobs.finish(job.id, "bench", "succeeded")
    with stores.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return job.id


# -- server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (Linux /proc)."""
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(db_url: URL, workers: int, home: Path, plain: bool = False) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "SEGPIPE_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "SEGPIPE_TOKENS": f"{TOKEN}:annotator",
        "SEGPIPE_HOME": str(home),
        "SEGPIPE_BROKER_URL": f"sqla+sqlite:///{home / 'broker.db'}",
        "SEGPIPE_DATA_ROOTS": str(home / "data"),
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "segpipe.api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
        *(["--loop", "asyncio", "--http", "h11"] if plain else []),
    ]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, workers)
        yield base, proc.pid
    finally:
        stop_process(proc)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], workers: int, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    ok_in_a_row = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                ok_in_a_row += 1
                # with several workers, give the others time to import too
                if ok_in_a_row >= 3 * workers:
                    return
        except httpx.HTTPError:
            ok_in_a_row = 0
        time.sleep(0.5)
    raise RuntimeError(f"uvicorn did not become ready within {timeout:.0f} s")


def check_answer(base: str, per_image: int) -> int:
    """One request by hand: the answer must be the image's masks. Returns the body size."""
    import httpx

    r = httpx.get(f"{base}/images/img000001/masks", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    r.raise_for_status()
    body = r.json()
    if len(body["instances"]) != per_image or not body["instances"][0]["rle"]["counts"]:
        raise RuntimeError(f"unexpected answer: {str(body)[:200]}")
    return len(r.content)


# -- load -----------------------------------------------------------------------------------------


def run_wrk(base: str, images: int, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    script = workdir / "masks.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "BENCH_IMAGES": str(images), "BENCH_TOKEN": TOKEN}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "5s", "-s", str(script), base]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in done.stderr.splitlines() if x.startswith("BENCH_RESULT "))
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": raw["non_2xx"] + raw["socket_errors"],
    }


class _RawClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams: far less CPU per request than a full
    client library, which matters when client and server share two cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _raw_load(base: str, images: int, connections: int, seconds: float, rate: float | None) -> dict[str, Any]:
    """Closed loop (``rate`` None: each connection sends its next request when the last one is answered),
    or open loop at ``rate`` requests/s: request i is due at start + i / rate, and its latency counts from
    when it was due, so time spent waiting for a free connection counts too (no coordinated omission)."""
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    issued = 0
    start = time.perf_counter() + 0.05
    stop_at = start + seconds

    async def one_connection() -> None:
        nonlocal errors, issued
        client = _RawClient(host, int(port))
        rng = random.Random()
        try:
            while True:
                now = time.perf_counter()
                if rate is None:
                    due = now
                else:
                    due = start + issued / rate
                    issued += 1
                    if due > now:
                        await asyncio.sleep(due - now)
                if due >= stop_at:
                    return
                try:
                    if await client.get(f"/images/img{rng.randrange(images):06d}/masks") != 200:
                        errors += 1
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    await client.close()
                    client = _RawClient(host, int(port))
                latencies.append(time.perf_counter() - due)
        finally:
            await client.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    # open loop: the offered window (the last answers may arrive after it); closed loop: until the last answer
    elapsed = seconds if rate is not None else time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p90_ms": q[89] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "errors": errors,
    }


def max_throughput(base: str, images: int, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Closed loop over ``connections``: requests/s at saturation (latency then is mostly queueing)."""
    if shutil.which("wrk"):
        return {
            "mode": f"max, {connections} conns",
            "client": "wrk",
            **run_wrk(base, images, connections, seconds, workdir),
        }
    return {
        "mode": f"max, {connections} conns",
        "client": "asyncio",
        **asyncio.run(_raw_load(base, images, connections, seconds, None)),
    }


def at_rate(base: str, images: int, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop at a fixed rate: the latency a client sees when the server carries ``rate`` requests/s."""
    return {
        "mode": f"open loop {rate:g}/s",
        "client": "asyncio",
        **asyncio.run(_raw_load(base, images, 64, seconds, rate)),
    }


# -- main -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": "cpu (no model runs in this benchmark)",
        # uvicorn picks these up when installed (--loop auto, --http auto); without them: asyncio + h11
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "httptools": importlib.util.find_spec("httptools") is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows over 1,000 images, 3 s runs, once")
    parser.add_argument("--repeat", type=int, default=None, help="runs per worker count (default 2; quick 1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 10; quick 3)")
    parser.add_argument("--plain", action="store_true", help="uvicorn with asyncio + h11 instead of uvloop + httptools")
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the open-loop latency run")
    args = parser.parse_args()
    images, per_image = (1_000, 10) if args.quick else (10_000, 10)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    repeat = args.repeat or (1 if args.quick else 2)

    info = machine()
    print(f"machine: {info}")
    results: list[dict[str, Any]] = []
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="segpipe-bench-") as tmp:
        home = Path(tmp)
        stores = Stores.open(url, home / "artifacts")
        t0 = time.perf_counter()
        populate(stores, images, per_image)
        setup_s = time.perf_counter() - t0
        stores.close()
        print(f"stored {images * per_image:,} instances over {images:,} images in {setup_s:.1f} s")
        for workers in args.workers:
            with server(url, workers, home, plain=args.plain) as (base, pid):
                body_bytes = check_answer(base, per_image)
                max_throughput(base, images, args.connections, min(2.0, seconds), home)  # warm-up: pools, caches
                for run in range(repeat):
                    for measure in (
                        lambda: max_throughput(base, images, args.connections, seconds, home),
                        lambda: at_rate(base, images, args.rate, seconds),
                    ):
                        cpu_before = process_tree_cpu_s(pid)
                        figures = measure()
                        # the server's own CPU per request: the figure least disturbed by other load
                        cpu_ms = (process_tree_cpu_s(pid) - cpu_before) * 1000 / max(figures["requests"], 1)
                        results.append({"workers": workers, "run": run + 1, **figures, "server_cpu_ms": cpu_ms})
        rows = images * per_image

    print()
    print(
        f"GET /images/{{key}}/masks (RLE JSON, {per_image} instances, ~{body_bytes / 1024:.1f} KB), "
        f"{rows:,} rows in PostgreSQL"
    )
    header = (
        "workers",
        "run",
        "mode",
        "client",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "cpu ms/req",
    )
    widths = (7, 3, 18, 7, 7, 7, 7, 7, 7, 6, 10)
    print(" ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in results:
        cells = (
            r["workers"],
            r["run"],
            r["mode"],
            r["client"],
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            r["errors"],
            f"{r['server_cpu_ms']:.2f}",
        )
        print(" ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True)))
    print("cpu ms/req: CPU time of the uvicorn processes per request (PostgreSQL's and the client's not included)")
    print(f"target: >= {args.rate:g} req/s at saturation, p99 <= 50 ms at {args.rate:g} req/s (open loop)")
    summary = {
        "bench": "masks_api",
        "rows": rows,
        "images": images,
        "instances_per_image": per_image,
        "response_bytes": body_bytes,
        "seconds_per_run": seconds,
        "rate": args.rate,
        "machine": info,
        "uvicorn": "asyncio + h11" if args.plain else "auto (uvloop + httptools when installed)",
        "runs": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
