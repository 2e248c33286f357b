"""EpochSampler: epoch-seeded order, mid-epoch resume, and repeated samples per epoch."""

from __future__ import annotations

from collections import Counter

import pytest

from segpipe.engine.sampler import EpochSampler


def test_repeats_draw_every_sample_that_many_times_per_epoch() -> None:
    sampler = EpochSampler(5, shuffle=True, seed=3, repeats=4)
    assert len(sampler) == 20
    order = list(sampler)
    assert Counter(order) == dict.fromkeys(range(5), 4)
    assert order != sorted(order)  # one shuffled order over the repeats, not five runs of 0..4


def test_repeated_epoch_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch() -> None:
    a, b = EpochSampler(6, shuffle=True, seed=1, repeats=3), EpochSampler(6, shuffle=True, seed=1, repeats=3)
    a.set_epoch(2)
    full = list(a)
    b.set_epoch(2, start_index=7)
    assert list(b) == full[7:] and len(b) == len(full) - 7
    a.set_epoch(3)
    assert list(a) != full


def test_repeats_shard_across_ranks_without_overlap() -> None:
    ranks = [EpochSampler(4, shuffle=True, seed=0, rank=r, world_size=2, repeats=3) for r in range(2)]
    orders = [list(s) for s in ranks]
    assert [len(o) for o in orders] == [6, 6]
    assert Counter(orders[0] + orders[1]) == dict.fromkeys(range(4), 3)


def test_repeats_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats"):
        EpochSampler(3, shuffle=False, repeats=0)
