"""Queue latency and drain rate of the job service: Redis vs the embedded SQLite broker, one real worker each.

    python bench/queue_latency.py [--quick] [--jobs N] [--drain N] [--rounds N] [--brokers redis sqlite]

A tiny binary U-Net (32-px shapes) is trained once, in this process. Then per broker a fresh SQLite
store and artifact root in a temporary folder and one ``segpipe worker`` process (solo pool, one
torch thread, reconciler off), both brokers' workers up at once; the jobs are small predict jobs,
each on 2 images of 32 px (the worker loads the tiny checkpoint and predicts in well under a second):

- latency: ``--jobs`` jobs submitted one at a time, each once the worker is idle again (the previous
  job's task has returned: its worker log says so) after a random pause of up to 1 s, the queue
  empty: submit → running is ``started_at − created_at``, both stamped by the store (the worker's
  claim sets ``started_at``), so the figure is the broker's delivery to an idle worker plus the claim;
- drain: batches of ``--drain`` jobs submitted at once; jobs/min = jobs / (last ``finished_at`` −
  first ``created_at``), the median over the batches: how many small predict jobs one worker gets
  through. "between" is the median gap from one job's end in the store to the next one's claim (the
  worker's clean-up after a job, the ack, the fetch).

The machine is shared and noisy, so the brokers are measured interleaved after one warm-up job each
(its first job imports torch): ``--rounds`` rounds, each running a share of the latency jobs and one
drain batch per broker, the order alternating (A B, B A, …). Jobs are submitted in-process through
`segpipe.service.submit` (the API adds nothing to the broker's part). Redis:
``SEGPIPE_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/12``; only that database is flushed,
before and after; unreachable, only the SQLite broker is measured). Prints the machine, a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `workers` and `segpipe` from this checkout when run as a script

from segpipe.processes import stop_process  # noqa: E402

REDIS_URL = os.environ.get("SEGPIPE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
WORKER_THREADS = "1"
TERMINAL = ("succeeded", "failed", "cancelled")


def train_tiny_model(root: Path) -> Path:
    """A binary U-Net run folder trained for 2 epochs on 8 shapes images (quality is beside the point)."""
    import torch

    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.runner import train

    torch.set_num_threads(int(WORKER_THREADS))
    coco = make_shapes_coco(root / "shapes", n_images=8, size=(32, 32), seed=0)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    config = from_dict({
        "task": "binary", "data": {"train": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]},
        "train": {"device": "cpu", "epochs": 2, "batch_size": 4, "image_size": 32, "scheduler": "none"},
        "output_dir": str(root / "model"),
    })  # fmt: skip
    return train(config, show_progress=False).run_dir


def make_inputs(root: Path, count: int) -> list[Path]:
    """``count`` folders of 2 images each: one per job, so no two jobs share an image key."""
    from segpipe.data.synthetic import make_shapes_coco

    folders = []
    for i in range(count):
        coco = make_shapes_coco(root / f"in{i:04d}", n_images=2, size=(32, 32), seed=i, crowd=False)
        coco.annotations.unlink()
        folders.append(coco.images)
    return folders


@dataclass
class Service:
    """One broker's side: settings, the store, the Celery app that publishes, and its worker process."""

    broker: str
    settings: Any
    stores: Any
    celery: Any
    worker: subprocess.Popen[bytes]
    log: Path
    latency: list[Any] = field(default_factory=list)  # jobs run one at a time, worker idle
    drains: list[list[Any]] = field(default_factory=list)  # batches submitted at once

    def submit(self, model: Path, images: Path) -> str:
        from segpipe.service import submit

        spec = {"model": str(model), "images": str(images), "device": "cpu", "predict": {"formats": ["png"]}}
        return submit(self.stores, self.celery, self.settings, "predict", spec, submitted_by="bench").id

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"{self.broker}: gave up waiting for {what} (worker status {self.worker.poll()}):\n{tail}")
            time.sleep(0.01)

    def wait_done(self, job_ids: list[str]) -> list[Any]:
        pending = set(job_ids)

        def finished() -> bool:
            pending.difference_update({j for j in list(pending) if self.stores.jobs.get(j).state in TERMINAL})
            return not pending

        self.wait_for(finished, f"{len(job_ids)} job(s) to finish")
        jobs = [self.stores.jobs.get(j) for j in job_ids]
        failed = [j for j in jobs if j.state != "succeeded"]
        if failed:
            raise SystemExit(f"{self.broker}: job {failed[0].id} {failed[0].state}: {failed[0].error}")
        return jobs

    def run_alone(self, model: Path, images: Path, rng: random.Random) -> Any:
        """One job on an idle worker; returns once the worker is idle again. It is submitted after a
        random pause, as real arrivals come: a polling transport's delay depends on where in its
        polling cycle a message lands, and a fixed rhythm would always hit the same spot."""
        time.sleep(rng.uniform(0.0, 1.0))
        job = self.wait_done([self.submit(model, images)])[0]
        # the job's end in the store comes before the task returns (the worker's clean-up, then the
        # ack): wait for the task's own log line, and a moment for the ack
        self.wait_for(lambda: f"run_job[{job.id}] succeeded" in self.log.read_text(errors="replace"),
                      f"the worker to finish task {job.id}", timeout=60)
        time.sleep(0.2)
        return job

    def drain(self, model: Path, folders: list[Path]) -> list[Any]:
        batch = [self.submit(model, f) for f in folders]
        return sorted(self.wait_done(batch), key=lambda j: j.started_at)


@contextmanager
def service(broker: str, root: Path) -> Iterator[Service]:
    """A fresh store and artifact root for `broker`, and one worker on it, ready when this yields."""
    from segpipe.settings import Settings
    from segpipe.stores import Stores
    from workers.celery_app import create_app

    home = root / f"home-{broker}"
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'segpipe.db'}",
        broker_url=REDIS_URL if broker == "redis" else None, data_roots=[root], artifact_root=home / "artifacts",
    )  # fmt: skip
    flush = _flush_redis if broker == "redis" else (lambda: None)
    flush()
    stores = Stores.from_settings(settings)  # migrated before the worker opens it
    celery = create_app(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(SEGPIPE_HOME=str(home), SEGPIPE_DATABASE_URL=settings.db_url, SEGPIPE_DATA_ROOTS=str(root),
               SEGPIPE_ARTIFACT_ROOT=str(settings.artifacts), OMP_NUM_THREADS=WORKER_THREADS, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if broker == "redis":
        env["SEGPIPE_BROKER_URL"] = REDIS_URL
    log = home / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--queues", "gpu,cpu",
                                   "--reconcile-every", "0"], env=env, stdout=out, stderr=subprocess.STDOUT)
    svc = Service(broker, settings, stores, celery, worker, log)
    try:
        svc.wait_for(lambda: " ready." in log.read_text(errors="replace"), "the worker to start", timeout=120)
        yield svc
    finally:
        stop_process(worker)
        celery.close()
        stores.close()
        flush()


def _redis_reachable() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_interleaved(services: list[Service], model: Path, inputs: Iterator[Path], rounds: int, n_latency: int,
                    n_drain: int) -> None:
    """Warm each worker up, then per round and per broker (the order alternating: A B, B A, …) a share
    of the latency jobs and one drain batch, so both brokers see the machine's load alike."""
    rng = random.Random(0)
    for svc in services:
        svc.run_alone(model, next(inputs), rng)  # the worker's first job imports torch
    for r in range(rounds):
        for svc in services if r % 2 == 0 else services[::-1]:
            share = n_latency // rounds + (1 if r < n_latency % rounds else 0)
            svc.latency += [svc.run_alone(model, next(inputs), rng) for _ in range(share)]
            svc.drains.append(svc.drain(model, [next(inputs) for _ in range(n_drain)]))


def figures(svc: Service) -> dict[str, Any]:
    wait_s = [(j.started_at - j.created_at).total_seconds() for j in svc.latency]
    run_s = [(j.finished_at - j.started_at).total_seconds() for j in svc.latency]
    rates, gaps = [], []
    for batch in svc.drains:
        span = (max(j.finished_at for j in batch) - min(j.created_at for j in batch)).total_seconds()
        rates.append(len(batch) * 60 / span)
        # one job's end in the store → the next one's claim: the worker's clean-up, ack and fetch
        gaps += [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(batch)]
    return {
        "broker": svc.broker,
        "latency_jobs": len(svc.latency),
        "submit_to_running_ms": {"p50": _ms(statistics.median(wait_s)), "p95": _ms(_percentile(wait_s, 0.95)),
                                 "max": _ms(max(wait_s))},
        "running_to_done_ms_p50": _ms(statistics.median(run_s)),
        "drain_batches": len(svc.drains),
        "drain_jobs_per_batch": len(svc.drains[0]),
        "jobs_per_minute_median": round(statistics.median(rates), 1),
        "jobs_per_minute_batches": [round(v, 1) for v in rates],
        "between_jobs_ms_p50": _ms(statistics.median(gaps)) if gaps else None,
    }


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "worker_torch_threads": int(WORKER_THREADS),
        "device": "cpu" + ("" if not torch.cuda.is_available() else " (a GPU is present; the jobs ask for cpu)"),
        "store": "SQLite file (both brokers)",
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds: 10 latency jobs, 2 drains of 8 per broker")
    parser.add_argument("--jobs", type=int, default=None, help="latency jobs per broker (default 40; quick 10)")
    parser.add_argument("--drain", type=int, default=None, help="jobs per drain batch (default 15; quick 8)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 4; quick 2)")
    parser.add_argument("--brokers", nargs="+", choices=["redis", "sqlite"], default=["redis", "sqlite"])
    args = parser.parse_args()
    n_latency = args.jobs or (10 if args.quick else 40)
    n_drain = args.drain or (8 if args.quick else 15)
    rounds = args.rounds or (2 if args.quick else 4)

    brokers = list(args.brokers)
    if "redis" in brokers and not _redis_reachable():
        print(f"Redis at {REDIS_URL} is unreachable (set SEGPIPE_BENCH_REDIS_URL): measuring the other broker only")
        brokers.remove("redis")
        if not brokers:
            raise SystemExit("no broker left to measure")
    info = machine()
    print(f"machine: {info}")
    with tempfile.TemporaryDirectory(prefix="segpipe-bench-queue-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        t0 = time.perf_counter()
        model = train_tiny_model(root)
        per_broker = 1 + n_latency + rounds * n_drain
        inputs = make_inputs(root, per_broker * len(brokers))
        print(f"tiny model trained and {len(inputs)} input folders written in {time.perf_counter() - t0:.1f} s")
        services = [stack.enter_context(service(broker, root)) for broker in brokers]
        t0 = time.perf_counter()
        run_interleaved(services, model, iter(inputs), rounds, n_latency, n_drain)
        print(f"measured in {time.perf_counter() - t0:.1f} s")
        results = [figures(svc) for svc in services]
    info["loadavg_1m_after"] = round(os.getloadavg()[0], 2)

    print()
    print(f"predict jobs of 2 images (32 px, tiny U-Net), one worker per broker, SQLite store, {rounds} rounds")
    header = ("broker", "jobs", "submit→run p50", "p95", "max", "run p50", "drains", "between p50", "jobs/min")
    widths = (7, 5, 15, 8, 8, 8, 8, 12, 9)
    print(" ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in results:
        lat = r["submit_to_running_ms"]
        cells = (r["broker"], r["latency_jobs"], f"{lat['p50']:.1f} ms", f"{lat['p95']:.1f}", f"{lat['max']:.1f}",
                 f"{r['running_to_done_ms_p50']:.0f} ms", f"{r['drain_batches']}×{r['drain_jobs_per_batch']}",
                 f"{r['between_jobs_ms_p50']:.0f} ms", f"{r['jobs_per_minute_median']:.1f}")
        print(" ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True)))
    print("submit→run: store-stamped created_at → started_at (broker delivery + claim), the worker idle")
    print("run: started → finished; drains: batches × jobs submitted at once; jobs/min: median over the batches")
    print("between: in a drain, one job's end in the store → the next one's claim (clean-up, ack, fetch)")
    print(json.dumps({"bench": "queue", "quick": args.quick, "rounds": rounds, "machine": info, "results": results}))


if __name__ == "__main__":
    main()
