"""Several GPUs of one host with torch DDP, launched by ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK). NCCL on CUDA, gloo on CPU (the tests run two CPU processes on gloo).

Rank 0 alone writes checkpoints, logs and plots and runs validation; the others wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_kind: str) -> DistInfo:
    """Join the process group torchrun prepared; a plain single-process run returns world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return info


def device_for(requested: str, info: DistInfo) -> torch.device:
    """`auto` picks CUDA when present; under DDP each process takes the GPU of its local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "mps" and not torch.backends.mps.is_available():
        requested = "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            from segpipe.errors import ConfigError

            raise ConfigError(f"train.device is {requested!r} but CUDA is not available here; use auto or cpu")
        if info.enabled:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def wrap(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def scaled_lr(lr: float, rule: str, world_size: int) -> float:
    """``train.lr_scaling``: the learning rate for ``world_size`` ranks, each with ``batch_size`` images
    (the effective batch grows with the world). ``none`` keeps ``lr``; ``linear`` multiplies it by the
    world size (Goyal et al., "Accurate, Large Minibatch SGD"); ``sqrt`` by its square root (Adam-style)."""
    if world_size <= 1 or rule == "none":
        return lr
    if rule == "linear":
        return lr * world_size
    if rule == "sqrt":
        return lr * world_size**0.5
    raise ValueError(f"unknown lr_scaling {rule!r}; known: none, linear, sqrt")


def sync_batchnorm(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """BatchNorm over the global batch (``train.sync_batchnorm``). torch's SyncBatchNorm runs on CUDA
    only: on CPU ranks each keeps its own statistics, and the log says so."""
    if not info.enabled:
        return model
    if device.type != "cuda":
        import logging

        logging.getLogger("segpipe.train").warning(
            "train.sync_batchnorm: SyncBatchNorm needs CUDA; on %s each rank keeps its own BatchNorm statistics",
            device.type)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
