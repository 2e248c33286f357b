"""Top-N by uncertainty, near-duplicates kept out of the list."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.ranking.fingerprints import dhash, hamming
from segpipe.ranking.select import Candidate, rank


def _picture(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((size // 8, size // 8, 1), dtype=np.uint8))


def test_near_duplicates_hash_close_and_different_pictures_far() -> None:
    a = _picture(1)
    brighter = np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8)
    resized = np.kron(a, np.ones((2, 2, 1), dtype=np.uint8))
    assert hamming(dhash(a), dhash(brighter)) <= 3
    assert hamming(dhash(a), dhash(resized)) <= 3
    assert hamming(dhash(a), dhash(_picture(2))) > 12


def test_most_uncertain_first_and_ties_by_key() -> None:
    pool = [Candidate("c", 0.2), Candidate("a", 0.9), Candidate("b", 0.9), Candidate("d", 0.5)]
    assert [c.key for c in rank(pool, 3).chosen] == ["a", "b", "d"]


def test_a_near_duplicate_does_not_take_a_place_in_the_list() -> None:
    a, twin, other = _picture(1), _picture(1), _picture(3)
    twin[0, 0] = 0  # a one-pixel edit: still a duplicate
    pool = [Candidate("a", 0.9, dhash(a)), Candidate("a-copy", 0.8, dhash(twin)), Candidate("b", 0.1, dhash(other))]
    ranking = rank(pool, 2)
    assert [c.key for c in ranking.chosen] == ["a", "b"]
    assert ranking.duplicates == {"a-copy": "a"}
    assert [c.key for c in rank(pool, 2, min_distance=0).chosen] == ["a", "a-copy"]


def test_top_n_bounds() -> None:
    pool = [Candidate(str(i), i / 10) for i in range(5)]
    assert rank(pool, 0).chosen == []
    assert len(rank(pool, 10).chosen) == 5
    with pytest.raises(ValueError, match="top_n"):
        rank(pool, -1)
