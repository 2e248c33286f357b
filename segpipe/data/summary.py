"""A dataset at a glance, the picture engineers look at before training: images per class, objects
per image, object sizes (COCO's small / medium / large bounds marked) and image sizes.

Counts come from the split's `Source` (so they are what training sees: category filters, crowd
handling, class maps applied), one decoded `Sample` at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segpipe.data.sources import Source

SMALL, LARGE = 32, 96  # COCO's area bounds, as the side of a square: 32² and 96² pixels


@dataclass
class DatasetStats:
    name: str
    images: int = 0
    images_per_class: Counter[str] = field(default_factory=Counter)
    objects_per_image: list[int] = field(default_factory=list)
    object_sides: list[float] = field(default_factory=list)  # sqrt(box area), pixels
    image_sizes: list[tuple[int, int]] = field(default_factory=list)  # (height, width)
    has_objects: bool = False


def dataset_stats(source: Source, name: str, limit: int | None = None) -> DatasetStats:
    """Statistics of the first ``limit`` samples of ``source`` (all when None)."""
    stats = DatasetStats(name)
    names = source.category_map.label_names  # per label: background first where label 0 is background
    first = 1 if source.category_map.offset else 0
    count = len(source) if limit is None else min(len(source), limit)
    for i in range(count):
        sample = source.load(i)
        stats.images += 1
        stats.image_sizes.append(sample.size)
        present: set[int] = set()
        if sample.class_id is not None:
            present.add(int(sample.class_id))
        if sample.label_map is not None:
            present.update(int(v) for v in np.unique(sample.label_map) if first <= v < len(names))
        if len(sample.labels):
            stats.has_objects = True
            present.update(int(v) for v in sample.labels)
            boxes = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)
            areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
            stats.object_sides.extend(float(s) for s in np.sqrt(areas))
        stats.objects_per_image.append(len(sample.labels))
        for label in present:
            stats.images_per_class[names[label] if label < len(names) else str(label)] += 1
    return stats


def plot_dataset_summary(splits: list[DatasetStats], out_png: str | Path) -> Path:
    """One row of four panels per split (train, val, …)."""
    from matplotlib.figure import Figure

    from segpipe.masks.render import _save_figure

    fig = Figure(figsize=(18, 3.8 * len(splits)), dpi=100, layout="constrained")
    for row, s in enumerate(splits):
        axes = [fig.add_subplot(len(splits), 4, row * 4 + k + 1) for k in range(4)]
        classes = sorted(s.images_per_class.items(), key=lambda kv: -kv[1])
        axes[0].barh([c for c, _ in classes][::-1], [n for _, n in classes][::-1], color="#3a7bd5")
        axes[0].set_title(f"{s.name}: images per class ({s.images} images)")
        axes[0].set_xlabel("images")
        if s.has_objects:
            top = max(s.objects_per_image) if s.objects_per_image else 0
            axes[1].hist(s.objects_per_image, bins=list(np.arange(top + 2) - 0.5), color="#d5663a")
            axes[1].set_title(f"{s.name}: objects per image")
            axes[1].set_xlabel("objects")
            sides = np.asarray(s.object_sides)
            bins: list[float] | int = list(np.geomspace(max(sides.min(), 1.0), max(sides.max(), 2.0), 30)) if sides.size else 10
            axes[2].hist(sides, bins=bins, color="#5aa05a")
            axes[2].set_xscale("log")
            for bound, label in ((SMALL, "small | medium"), (LARGE, "medium | large")):
                axes[2].axvline(bound, color="grey", linestyle="--", linewidth=1)
                axes[2].text(bound, axes[2].get_ylim()[1] * 0.95, f" {label}", fontsize=7, va="top")
            small = int((sides < SMALL).sum())
            large = int((sides >= LARGE).sum())
            axes[2].set_title(f"{s.name}: object size (√box area) — {small} small, "
                              f"{sides.size - small - large} medium, {large} large")
            axes[2].set_xlabel("pixels")
        else:
            for ax, what in ((axes[1], "objects per image"), (axes[2], "object sizes")):
                ax.text(0.5, 0.5, f"no objects: {what} n/a", ha="center", va="center")
                ax.set_axis_off()
        heights = [h for h, _ in s.image_sizes]
        widths = [w for _, w in s.image_sizes]
        sizes = Counter(s.image_sizes)
        axes[3].scatter(widths, heights, s=[8 + 4 * sizes[(h, w)] for h, w in s.image_sizes], alpha=0.5)
        axes[3].set_title(f"{s.name}: image sizes ({len(sizes)} distinct)")
        axes[3].set_xlabel("width")
        axes[3].set_ylabel("height")
        for ax in axes:
            ax.grid(alpha=0.3)
    return _save_figure(fig, out_png)
