"""Data-parallel training throughput: 2 ranks × 1 thread and 2 nodes × 1 rank against 1 rank × 1 thread.

    python bench/ddp_scaling.py [--quick] [--rounds N] [--images N] [--size PX] [--batch N] [--accumulate N]

Every configuration runs the same segpipe training (a small CNN on ``--images`` class-folder images of
``--size`` px, ``--batch`` images per rank (4) and ``--accumulate`` micro-batches per optimizer step (1),
one torch thread per rank, no validation) under PyTorch's elastic
agent, as a queued job does (`segpipe.jobs.elastic`):

- ``1x1``: ``torch.distributed.run --nproc-per-node 1``;
- ``2x1``: ``--nproc-per-node 2`` (one host, two ranks, gloo);
- ``2 nodes``: two agents (``--nnodes 2 --nproc-per-node 1``) meeting at a c10d rendezvous on
  loopback, the first hosting it, exactly the command each node of a queued multi-node job runs.

images/s = (epochs after the first) × images / the time between the first and the last epoch end on
rank 0 (the first epoch is a warm-up; start-up and imports are outside the window). The ranks split
each epoch (weak scaling: the global batch doubles with two ranks). The configurations run interleaved
(A B C, then C B A, …) and the medians are quoted; scaling = images/s ÷ the 1-rank images/s of the same
round. On a machine with fewer free cores than ranks the ratio measures the machine, not segpipe:
the output names the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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


def _rank_entry(config_path: Path, out: Path) -> None:
    """What each rank runs: the normal training entry point, timing rank 0's epoch ends."""
    from segpipe.config import from_dict
    from segpipe.engine.hooks import Hook
    from segpipe.engine.runner import train

    ends: list[float] = []

    class EpochClock(Hook):
        def after_epoch(self, ctx: Any) -> None:
            ends.append(time.perf_counter())

    config = from_dict(json.loads(config_path.read_text()))
    # as a queued job: rank 0 polls a cancel flag and every rank follows its decision (segpipe.jobs.elastic.rank)
    train(config, show_progress=False, extra_hooks=(EpochClock(),), should_stop=(lambda: False))
    if int(os.environ.get("RANK", "0")) == 0:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        out.write_text(json.dumps({"epoch_ends": ends, "world_size": world}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agent(nnodes: int, nproc: int, endpoint: str, is_host: bool, run_id: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
            "--rdzv-conf", f"is_host={int(is_host)},join_timeout=120", "--local-addr", "127.0.0.1",
            "--monitor-interval", "1",  # as a queued job's agent (segpipe.jobs.elastic.launch), not torchrun's 0.1 s
            str(Path(__file__).resolve()), "--rank-entry", *args]


def run_config(name: str, config: Path, work: Path, images: int, epochs: int) -> float:
    """One training under the agent(s); returns images/s over the epochs after the first."""
    out = work / f"{name}-{time.monotonic_ns()}.json"
    endpoint = f"127.0.0.1:{_free_port()}"
    run_id = f"bench-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = [str(config), str(out)]
    if name == "2 nodes x 1":
        commands = [_agent(2, 1, endpoint, True, run_id, args), _agent(2, 1, endpoint, False, run_id, args)]
    else:
        commands = [_agent(1, 2 if name == "2x1" else 1, endpoint, True, run_id, args)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work)
             for c in commands]
    logs = [p.communicate(timeout=1800)[0].decode(errors="replace") for p in procs]
    if any(p.returncode for p in procs) or not out.is_file():
        raise SystemExit(f"{name} failed:\n" + "\n".join(log[-3000:] for log in logs))
    ends = json.loads(out.read_text())["epoch_ends"]
    return (epochs - 1) * images / (ends[-1] - ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 48 images of 32 px, 3 epochs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="images per rank and micro-batch")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--rank-entry", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_entry:
        _rank_entry(Path(args.rank_entry[0]), Path(args.rank_entry[1]))
        return
    if args.quick:
        args.rounds, args.images, args.size, args.epochs = 1, 48, 32, 3

    from common import emit, machine, print_table

    from segpipe.data.synthetic import make_class_folders

    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        work = Path(tmp)
        data = make_class_folders(work / "data", per_class=args.images // 3, size=(args.size, args.size))
        images = 3 * (args.images // 3)
        config = work / "config.json"
        config.write_text(json.dumps({
            "task": "classification", "data": {"train": {"root": str(data)}, "num_workers": 0},
            "augment": {"preset": "none"}, "model": {"name": "cnn_small", "channels": [16, 32, 64], "hidden": 64},
            "train": {"device": "cpu", "seed": 0, "epochs": args.epochs, "batch_size": args.batch,
                      "accumulate": args.accumulate, "lr": 1e-3,
                      "image_size": args.size, "scheduler": "none", "threads": 1},
            "output_dir": str(work / "run"),
        }))
        names = ["1x1", "2x1", "2 nodes x 1"]
        rates: dict[str, list[float]] = {n: [] for n in names}
        ratios: dict[str, list[float]] = {n: [] for n in names[1:]}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            got = {n: run_config(n, config, work, images, args.epochs) for n in order}
            for n in names:
                rates[n].append(got[n])
            for n in names[1:]:
                ratios[n].append(got[n] / got["1x1"])
    rows = [[n, f"{statistics.median(rates[n]):.1f}", "1.00" if n == "1x1" else f"{statistics.median(ratios[n]):.2f}"]
            for n in names]
    info = machine()
    print_table(f"data-parallel training, cnn_small {args.size} px, batch {args.batch} per rank × accumulate "
                f"{args.accumulate}, {images} images, "
                f"{args.rounds} round(s); load {info['load_avg_1m']}", ["ranks", "images/s", "scaling"], rows)
    emit({"bench": "ddp_scaling", "machine": info, "images_per_s": {n: statistics.median(v) for n, v in rates.items()},
          "scaling": {n: statistics.median(v) for n, v in ratios.items()}, "rounds": args.rounds,
          "images": images, "size": args.size, "batch": args.batch, "accumulate": args.accumulate})


if __name__ == "__main__":
    main()
