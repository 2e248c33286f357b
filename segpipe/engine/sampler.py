"""A resumable, epoch-seeded sampler that also shards across DDP ranks.

The order of epoch e depends only on (seed, e), so a run resumed from the checkpoint of epoch e-1 sees
exactly the batches an uninterrupted run would. ``start_index`` skips samples already consumed in a
partially finished epoch (a cancelled or crashed job resumes mid-epoch without repeating them).
``repeats`` draws every sample that many times per epoch (in one shuffled order): a small dataset
trained on random crops gets longer epochs, so validation and checkpoints come less often.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(
        self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, repeats: int = 1
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        self.dataset_size = size
        self.size = size * repeats
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        self.epoch = epoch
        self.start_index = start_index

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.size != self.dataset_size:
            order = [i % self.dataset_size for i in order]
        if self.world_size > 1:  # pad so every rank gets the same number of samples
            per_rank = -(-self.size // self.world_size)
            order = (order * 2)[: per_rank * self.world_size][self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start_index :])

    def __len__(self) -> int:
        per_rank = -(-self.size // self.world_size) if self.world_size > 1 else self.size
        return max(per_rank - self.start_index, 0)
