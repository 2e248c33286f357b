"""Perceptual fingerprints for spotting near-duplicate images (burst shots, re-encodes, small crops).

A difference hash (dHash): the image in grey, shrunk to 9×8, one bit per horizontal neighbour pair
("is the left pixel brighter?"). Re-encoding, resizing and small brightness changes flip few of the 64
bits; unrelated images differ in about half. It needs the pixels once, cheaply, at predict time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BITS = 64


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of an ``H×W`` or ``H×W×C`` uint8 image."""
    grey = Image.fromarray(image).convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    """Bits in which two fingerprints differ."""
    return (a ^ b).bit_count()
