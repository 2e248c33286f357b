"""Several GPUs of one host with torch DDP, launched by ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK). NCCL on CUDA, gloo on CPU (the tests run two CPU processes on gloo).

Rank 0 alone writes checkpoints, logs and plots and runs validation; the others wait at a barrier.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
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


# DDP's gradient buckets (25 MB by default) let NCCL all-reduce the first gradients while the backward
# pass computes the rest. On CPU ranks there is nothing to overlap with: the ranks' compute threads hold
# the cores, and every bucket is one more gloo round trip whose threads must wait for a core. One bucket,
# reduced once after the backward pass, measured faster on 2 cores (bench/ddp_scaling.py, docs/distributed.md).
CPU_BUCKET_MB = 1024


def wrap(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    if not info.enabled:
        return model
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index], find_unused_parameters=False)
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=False, bucket_cap_mb=CPU_BUCKET_MB)


def gradient_sync(model: nn.Module, sync: bool) -> AbstractContextManager[None]:
    """The forward and backward of one micro-batch: under DDP a micro-batch that does not end an
    optimizer step (``train.accumulate``) keeps its gradients local (``no_sync``); the one that ends the
    step all-reduces the sum of them all. Without it every micro-batch would pay an all-reduce."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def average_gradients(model: nn.Module) -> None:
    """Average the ranks' gradients by hand: for an optimizer step whose last micro-batch ran under
    ``no_sync`` (a loader that ended before the expected batch count)."""
    if not isinstance(model, nn.parallel.DistributedDataParallel) or not dist.is_initialized():
        return
    world = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world


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
