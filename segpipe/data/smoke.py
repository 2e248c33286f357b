"""Generated shape datasets laid out for the smoke configs in ``configs/smoke/`` (one per task kind).

``write_smoke_data(out_dir)`` writes, from ``segpipe.data.synthetic``, a train and a val split (drawn
with different seeds, so no image is in both) in every layout segpipe reads::

    out_dir/coco/{train,val}/images/*.png + annotations.json   instance, detection, semantic, binary,
                                                                classification (box crops)
    out_dir/semantic/{train,val}/{images,masks}/*.png           masks hold 0 background, 1..3 shapes
    out_dir/binary/{train,val}/{images,masks}/*.png             masks hold 0 / 255
    out_dir/classes/{train,val}/<shape>/*.png                   circle, square, triangle

The smoke configs read ``data/smoke`` under the repository root (``segpipe shapes data/smoke``). The
data is small and quick to learn: a smoke run checks that a task trains, evaluates and predicts end to
end on a CPU in about a minute, not how good a model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco
from segpipe.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "val")
COCO_SIZE = (96, 128)  # height, width
MASK_SIZE = (64, 64)
CLASS_SIZE = (32, 32)


@dataclass(frozen=True)
class SmokeData:
    """The roots ``write_smoke_data`` wrote (see the module docstring for what lies under each)."""

    coco: Path
    semantic: Path
    binary: Path
    classes: Path


def write_smoke_data(out_dir: str | Path, n_train: int = 48, n_val: int = 12, seed: int = 0) -> SmokeData:
    """Write every layout's train (`n_train` images; class folders: `n_train` // 3 per class) and val
    split (`n_val`, likewise) under `out_dir`. Refuses (ConfigError) a non-empty `out_dir`: a smaller
    rerun would leave older files behind and change what the configs train on."""
    out = Path(out_dir)
    if n_train < 3 or n_val < 3:
        raise ConfigError(f"smoke data needs at least 3 train and 3 val images, got {n_train} and {n_val}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not an empty folder; remove it or pick another")
    for offset, (split, n) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        split_seed = seed * 10 + offset  # distinct per split, so val images are new drawings
        make_shapes_coco(out / "coco" / split, n_images=n, size=COCO_SIZE, seed=split_seed)
        make_mask_folders(out / "semantic" / split, n_images=n, size=MASK_SIZE, seed=split_seed)
        make_mask_folders(out / "binary" / split, n_images=n, size=MASK_SIZE, binary=True, seed=split_seed)
        make_class_folders(out / "classes" / split, per_class=max(1, n // 3), size=CLASS_SIZE, seed=split_seed)
    return SmokeData(out / "coco", out / "semantic", out / "binary", out / "classes")
