"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

`last.pt` holds everything needed to continue exactly where training stopped: model, optimizer,
scheduler and grad-scaler states, epoch / step counters, RNG states (torch, CUDA, numpy, python), the
best monitored metric, the resolved config (YAML text) and the category map. `best.pt` keeps the same
minus the optimizer, scheduler, scaler and RNG states (`weights_only_state`): it is for prediction,
evaluation and model versions, never for resuming. Only tensors and plain
containers go in, so the safe ``weights_only`` loader can read it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe.errors import WeightsError
from segpipe.run_files import BEST, LAST  # noqa: F401 - the run-folder names, re-exported for the engine

RESUME_ONLY = frozenset({"optimizer", "scheduler", "scaler", "rng"})


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically: a crash or a full disk mid-write leaves the previous file intact
    and no partial file. The disk must first have room for the tensors plus ``SEGPIPE_MIN_FREE_MB``;
    a full disk is `DiskFull` naming the path and the size."""
    from segpipe.storage.disk import write_atomic

    return write_atomic(path, lambda f: torch.save(state, f), needed=state_bytes(state))


def state_bytes(state: Any) -> int:
    """Bytes of every tensor in a (nested) checkpoint state: what ``torch.save`` will write, give or take
    its small zip overhead."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def weights_only_state(state: dict[str, Any]) -> dict[str, Any]:
    """What `best.pt` keeps: the model, its config and category map and the counters; not the optimizer,
    scheduler, scaler or RNG states, which only resuming needs (resume reads `last.pt`). For Adam-like
    optimizers that is two thirds of the file."""
    return {k: v for k, v in state.items() if k not in RESUME_ONLY}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """A segpipe checkpoint, unpickled with ``weights_only=True``. ``mmap``: tensors stay in the file
    until touched (a reader of its metadata — task, category map — skips reading the weights)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported the same way
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # torch's advice runs over many lines
        raise WeightsError(f"{path}: not a loadable checkpoint with weights_only=True ({why})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise WeightsError(f"{path}: not a segpipe checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
