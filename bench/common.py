"""What every comparison benchmark needs: the machine it ran on and an interleaved A/B timer.

Both sides run in one process, after a warm-up each, alternating A B, B A, … so that load from
other processes on a shared machine falls on both alike; medians and the median of per-round ratios
are quoted (DESIGN.md § Benchmarks)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> dict[str, Any]:
    return {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def interleave(a: Callable[[], int], b: Callable[[], int], rounds: int) -> dict[str, float]:
    """Each callable runs one pass and returns how many items it processed. Returns items/s medians
    of both sides and the median per-round ratio a/b (> 1: a is faster)."""
    a(), b()  # warm-up: allocator, cudnn autotune, lazy imports
    rates: dict[str, list[float]] = {"a": [], "b": []}
    ratios = []
    for r in range(rounds):
        order = (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))
        this: dict[str, float] = {}
        for name, fn in order:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            n = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            this[name] = n / (time.perf_counter() - start)
            rates[name].append(this[name])
        ratios.append(this["a"] / this["b"])
    return {
        "a_per_s": statistics.median(rates["a"]),
        "b_per_s": statistics.median(rates["b"]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures))
