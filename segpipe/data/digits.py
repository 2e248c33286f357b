"""scikit-learn's handwritten digits as class-per-folder PNGs: a real classification dataset, offline.

``load_digits`` ships 1,797 8×8 images (UCI optical digits, 16 grey levels: ink 16, paper 0) inside
scikit-learn, so nothing is downloaded. ``write_digits(out_dir)`` writes::

    out_dir/train/<digit>/<index>.png     the first 898 images
    out_dir/test/<digit>/<index>.png      the last 899 images

The split is the one of scikit-learn's documented example "Recognizing hand-written digits"
(``train_test_split(..., test_size=0.5, shuffle=False)``: first half train, second half test, no
shuffling), computed by that same call, so accuracies compare with the example's SVC (0.969).
``<index>`` is the image's position in ``load_digits()`` (4 digits, zero-padded), so every file traces
back to its source row.

Pixels: grey level v (0..16) is stored as ``round(v * 255 / 16)`` in an 8-bit grayscale PNG, white
digits on black as in the source; the 17 levels stay distinct, so ``png * 16 / 255`` rounds back to v.
Images stay 8×8 by default: the job config's ``train.image_size`` resizes them for the model (the
configs in ``configs/classification`` use 32 px). ``scale`` > 1 upsamples by pixel repetition (nearest
neighbour, no new grey levels) for tools or viewers that want bigger files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segpipe.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "test")
LEVELS = 16  # load_digits grey levels run 0..16


@dataclass(frozen=True)
class DigitsFolders:
    """Where ``write_digits`` put the data: class-per-folder roots and image counts per split."""

    train: Path
    test: Path
    counts: dict[str, int]


def digits_split() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"train" | "test": (images, targets, indices)}`` of scikit-learn's documented SVC example.

    images: N×8×8 float64 grey levels 0..16; targets: N int digits 0..9; indices: N int positions in
    ``load_digits()``. Train is the first 898 images, test the last 899.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.images))
    train_idx, test_idx = train_test_split(indices, test_size=0.5, shuffle=False)
    return {
        "train": (digits.images[train_idx], digits.target[train_idx], train_idx),
        "test": (digits.images[test_idx], digits.target[test_idx], test_idx),
    }


def to_uint8(image: np.ndarray, scale: int = 1) -> np.ndarray:
    """8×8 grey levels 0..16 → (8·scale)×(8·scale) uint8 0..255, upsampled by pixel repetition."""
    pixels = np.rint(np.asarray(image, dtype=np.float64) * (255.0 / LEVELS)).astype(np.uint8)
    if scale > 1:
        pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    return pixels


def write_digits(out_dir: str | Path, scale: int = 1, overwrite: bool = False) -> DigitsFolders:
    """Write the digits as ``out_dir/{train,test}/<digit>/<index>.png`` (see the module docstring).

    Refuses (ConfigError) when ``out_dir/train`` or ``out_dir/test`` already exists, unless
    ``overwrite``: then the 1,797 files are written again in place. Nothing is deleted (the file
    names never change, so a previous run's files are all replaced; files someone else put there stay).
    """
    if not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"digits: scale must be a whole number ≥ 1, got {scale!r}")
    out = Path(out_dir)
    for split in SPLITS:
        folder = out / split
        if folder.exists():
            if not overwrite:
                raise ConfigError(f"{folder} already exists; remove it or pass overwrite (--force) to replace it")
            if not folder.is_dir():
                raise ConfigError(f"{folder} exists and is not a folder")
    counts: dict[str, int] = {}
    for split, (images, targets, indices) in digits_split().items():
        for digit in range(10):
            (out / split / str(digit)).mkdir(parents=True, exist_ok=True)
        for image, target, index in zip(images, targets, indices, strict=True):
            path = out / split / str(int(target)) / f"{int(index):04d}.png"
            if not cv2.imwrite(str(path), to_uint8(image, scale)):
                raise OSError(f"{path}: could not write image")
        counts[split] = len(indices)
    return DigitsFolders(out / "train", out / "test", counts)
