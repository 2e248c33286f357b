"""Top-N by uncertainty with a diversity rule.

Greedy: walk the candidates from most to least uncertain; take one unless its fingerprint is within
``min_distance`` bits of an image already taken (a near-duplicate teaches little that its twin does
not). Skipped near-duplicates are listed with the image they duplicate, so a caller can show why.
Ties in uncertainty break by key, so a ranking is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from segpipe.ranking.fingerprints import hamming

# dHash bits two images may differ in and still count as near-duplicates: re-encodes and resizes of
# one picture differ in 0–5 of 64, unrelated pictures in about 32.
DEFAULT_MIN_DISTANCE = 6


@dataclass(frozen=True)
class Candidate:
    key: str
    uncertainty: float
    fingerprint: int | None = None  # None: never treated as a duplicate


@dataclass
class Ranking:
    chosen: list[Candidate] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)  # skipped key → the chosen key it duplicates


def rank(candidates: Sequence[Candidate], top_n: int, min_distance: int = DEFAULT_MIN_DISTANCE) -> Ranking:
    """The ``top_n`` most uncertain candidates, no two within ``min_distance`` fingerprint bits.

    ``min_distance=0`` turns the diversity rule off.
    """
    if top_n < 0:
        raise ValueError(f"top_n must be ≥ 0, got {top_n}")
    result = Ranking()
    for candidate in sorted(candidates, key=lambda c: (-c.uncertainty, c.key)):
        if len(result.chosen) >= top_n:
            break
        twin = _near_duplicate(candidate, result.chosen, min_distance)
        if twin is not None:
            result.duplicates[candidate.key] = twin.key
            continue
        result.chosen.append(candidate)
    return result


def _near_duplicate(candidate: Candidate, chosen: Sequence[Candidate], min_distance: int) -> Candidate | None:
    if candidate.fingerprint is None or min_distance <= 0:
        return None
    for other in chosen:
        if other.fingerprint is not None and hamming(candidate.fingerprint, other.fingerprint) < min_distance:
            return other
    return None
