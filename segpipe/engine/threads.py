"""How many CPU threads torch uses: by default the cores this process may run on.

``torch`` picks its own default from the machine's core count, which is wrong inside a container or
under ``taskset`` (it sees every core of the host) and, on a shared CPU, idle OpenMP threads
busy-wait. The order of precedence: an explicit ``train.threads``, then ``OMP_NUM_THREADS`` when the
operator set it, then the cores in the process's CPU affinity mask.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # macOS / Windows have no affinity mask
        return max(os.cpu_count() or 1, 1)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set to a positive integer, else ``available_cores()``."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return available_cores()


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (``threads`` or the default); returns the count in force.

    Inter-op threads are left alone: torch only allows setting them before any parallel work ran."""
    n = int(threads) if threads else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
