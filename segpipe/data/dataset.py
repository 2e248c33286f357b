"""Source + transform → torch Dataset, the batch format per task kind, and a seeded DataLoader.

Batch format (a dict; images stay ``uint8`` — adapters normalise on the device):

- ``images``:     ``uint8`` B×3×H×W tensor (classification, semantic, binary; contiguous) or a list of
  ``uint8`` 3×H×W tensors (instance, detection: sizes may differ);
- ``image_ids``:  list of the samples' ``image_id``;
- ``class_ids``:  ``int64`` (B,) — classification;
- ``label_maps``: ``int64`` B×H×W — semantic, binary (``ignore_index`` kept, 255 by default);
- ``targets``:    list of ``{"boxes": float32 N×4 xyxy, "labels": int64 N, "masks": uint8 N×H×W}`` —
  instance; detection has no ``"masks"``;
- ``meta``:       list of the samples' ``meta`` dicts.

Conversion is cheap on purpose: ``torch.from_numpy`` views, then one copy into the batch tensor, which
inside a loader worker is allocated in shared memory (as torch's default collate does) so that handing
it to the main process copies nothing more.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from segpipe.data.sample import Sample
from segpipe.data.sources import Source
from segpipe.errors import DataError
from segpipe.task_kinds import traits

Item = dict[str, Any]
Batch = dict[str, Any]


class TaskDataset(Dataset[Item]):
    """``source.load(i)``, then ``transform`` (any Sample → Sample callable, or None), as tensors.

    An item holds ``image`` (``uint8`` 3×H×W view of the sample's image), ``image_id``, ``meta`` and,
    per task, ``class_id`` (int), ``label_map`` (``uint8`` H×W) or ``target`` (see the batch format).
    The transformed Sample is checked against the contract (`Sample.check`), so a broken transform
    fails here, naming the image, rather than deep inside a model.
    """

    def __init__(self, source: Source, transform: Callable[[Sample], Sample] | None, task: str) -> None:
        traits(task)  # ConfigError for an unknown task
        self.source = source
        self.transform = transform
        self.task = task

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Item:
        sample = self.source.load(index)
        if self.transform is not None:
            sample = self.transform(sample)
        sample.check()
        return sample_to_item(sample, self.task)


def sample_to_item(sample: Sample, task: str) -> Item:
    """One Sample → the tensors its task's collate needs (views of the arrays where possible)."""
    item: Item = {"image": _tensor(sample.image).permute(2, 0, 1), "image_id": sample.image_id, "meta": sample.meta}
    kind = traits(task)
    if kind.target == "class_id":
        if sample.class_id is None:
            raise DataError(f"image {sample.image_id}: classification sample without class_id")
        item["class_id"] = int(sample.class_id)
    elif kind.dense:
        if sample.label_map is None:
            raise DataError(f"image {sample.image_id}: {task} sample without label_map")
        item["label_map"] = _tensor(sample.label_map)
    else:
        target = {"boxes": _tensor(sample.boxes), "labels": _tensor(sample.labels)}
        if kind.instance_masks:
            if len(sample.masks) != len(sample.labels):
                raise DataError(f"image {sample.image_id}: {len(sample.masks)} masks for {len(sample.labels)} labels")
            target["masks"] = _tensor(sample.masks)
        item["target"] = target
    return item


def _tensor(array: np.ndarray) -> torch.Tensor:
    # transforms may hand back negative-stride views (flips), which torch cannot wrap; copy only those
    return torch.from_numpy(array if array.flags.c_contiguous else np.ascontiguousarray(array))


# ----------------------------------------------------------------------------------------------- collate


def collate(task: str) -> Callable[[list[Item]], Batch]:
    """The collate function for a task kind (picklable, so it works with spawned workers)."""
    traits(task)  # ConfigError for an unknown task
    return functools.partial(collate_items, task=task)


def collate_items(items: list[Item], task: str) -> Batch:
    """Items of one task → the batch dict described in the module docstring."""
    batch: Batch = {"image_ids": [it["image_id"] for it in items], "meta": [it["meta"] for it in items]}
    kind = traits(task)
    if kind.stacks:
        batch["images"] = _stack([it["image"] for it in items], torch.uint8, batch["image_ids"])
    else:
        batch["images"] = [it["image"] for it in items]
    if kind.target == "class_id":
        batch["class_ids"] = torch.tensor([it["class_id"] for it in items], dtype=torch.int64)
    elif kind.dense:
        batch["label_maps"] = _stack([it["label_map"] for it in items], torch.int64, batch["image_ids"])
    else:
        batch["targets"] = [it["target"] for it in items]
    return batch


def _stack(tensors: list[torch.Tensor], dtype: torch.dtype, image_ids: list[Any]) -> torch.Tensor:
    """Copy same-shape tensors into one new contiguous (B, ...) tensor of `dtype`."""
    shape = tensors[0].shape
    for t, image_id in zip(tensors, image_ids, strict=False):
        if t.shape != shape:
            raise DataError(
                f"images {image_ids[0]} ({_hw(shape)}) and {image_id} ({_hw(t.shape)}) differ in size and "
                f"cannot share a batch; resize them in the augment pipeline or use batch size 1"
            )
    out = _batch_buffer((len(tensors), *shape), dtype)
    dst = out.numpy()
    for i, t in enumerate(tensors):
        # NumPy does the HWC → CHW reordering of permuted image views (and uint8 → int64) about twice
        # as fast as Tensor.copy_ on CPU
        dst[i] = t.numpy()
    return out


def _hw(shape: torch.Size) -> str:
    return "×".join(str(s) for s in shape[-2:])


def _batch_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    # in a worker the batch goes to the main process through shared memory: allocate it there directly
    proto = torch.empty(0, dtype=dtype)
    # what torch's default_collate does; torch has no public call for it
    storage = proto._typed_storage()._new_shared(math.prod(shape), device=proto.device)  # noqa: SLF001
    return proto.new(storage).view(shape)


# ------------------------------------------------------------------------------------------------ loader


def build_loader(
    dataset: Dataset[Item],
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
    sampler: Sampler[int] | None = None,
) -> DataLoader[Item]:
    """A DataLoader whose order and augmentations are a function of `seed` (for a given num_workers).

    ``dataset`` is a `TaskDataset` or a wrapper exposing it as ``.dataset`` (torch ``Subset``). The
    shuffle order comes from a seeded ``torch.Generator``; each worker seeds ``random``, NumPy and the
    transform (``transform.set_random_seed``, as albumentations ``Compose`` has) from torch's per-worker
    seed, so workers draw different augmentations. With ``num_workers=0`` the transform is seeded with
    `seed` here. Memory is pinned only when CUDA is available.

    A `sampler` (e.g. the engine's resumable ``EpochSampler``) replaces ``shuffle``. Workers are not
    persistent: they restart every epoch, seeded from the generator, so `reseed_epoch` makes an epoch's
    augmentations a function of (seed, epoch) alone — what lets a resumed run match an uninterrupted one.
    """
    task_dataset = _unwrap(dataset)
    if num_workers == 0:
        _seed_transform(task_dataset, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate(task_dataset.task),
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
    )


def reseed_epoch(loader: DataLoader[Item], seed: int, epoch: int) -> None:
    """Make epoch `epoch`'s worker seeds and (with no workers) augmentations depend on (seed, epoch) only."""
    epoch_seed = (seed * 100_003 + epoch) % 2**63
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
    if loader.num_workers == 0:
        _seed_transform(_unwrap(loader.dataset), epoch_seed % 2**32)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed everything random in this worker from torch's worker seed
    (the loader generator's base seed + worker id, so it differs per worker and follows `seed`)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = get_worker_info()
    if info is not None:
        _seed_transform(_unwrap(info.dataset), seed)


def _seed_transform(dataset: TaskDataset, seed: int) -> None:
    set_seed = getattr(dataset.transform, "set_random_seed", None)
    if callable(set_seed):
        set_seed(seed)


def _unwrap(dataset: Any) -> TaskDataset:
    while not isinstance(dataset, TaskDataset) and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    if not isinstance(dataset, TaskDataset):
        raise TypeError(f"build_loader needs a TaskDataset (or a Subset of one), got {type(dataset).__name__}")
    return dataset
