"""Category ids: COCO's are sparse (1..90); models see contiguous labels. The map is computed once per
dataset, saved with every checkpoint, and applied in reverse on every export.

Label numbering (``offset``):
- segmentation, instance, detection: ``offset=1`` — label 0 is background, category i → label i+1;
- classification: ``offset=0`` — category i → class index i.

Binary maps have one category (label 1 = foreground); ``foreground_ids`` records every original id
merged into it (the first one is ``ids[0]``, used on export).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CategoryMap:
    ids: tuple[int, ...]  # original (e.g. COCO) category ids, in contiguous order
    names: tuple[str, ...]
    offset: int = 1
    foreground_ids: tuple[int, ...] = ()  # binary task: original ids merged into label 1

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.names):
            raise ValueError("CategoryMap: ids and names differ in length")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"CategoryMap: duplicate category ids in {self.ids}")

    @property
    def num_categories(self) -> int:
        return len(self.ids)

    @property
    def num_labels(self) -> int:
        """Number of model outputs: categories plus background when offset is 1."""
        return len(self.ids) + self.offset

    def to_label(self, category_id: int) -> int:
        return self._label_of[category_id]

    def to_category(self, label: int) -> int:
        index = int(label) - self.offset
        if not 0 <= index < len(self.ids):
            raise KeyError(f"label {label} has no category (labels {self.offset}..{self.num_labels - 1})")
        return self.ids[index]

    def name_of_label(self, label: int) -> str:
        if self.offset and label == 0:
            return "background"
        return self.names[int(label) - self.offset]

    @property
    def label_names(self) -> list[str]:
        """Name per model output index (background first when offset is 1)."""
        return (["background"] if self.offset else []) + list(self.names)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._label_of

    @cached_property
    def _label_of(self) -> dict[int, int]:
        merged = dict.fromkeys(self.foreground_ids, self.offset)
        return merged | {cid: i + self.offset for i, cid in enumerate(self.ids)}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ids": list(self.ids), "names": list(self.names), "offset": self.offset}
        if self.foreground_ids:
            d["foreground_ids"] = list(self.foreground_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoryMap:
        return cls(
            tuple(int(i) for i in d["ids"]),
            tuple(str(n) for n in d["names"]),
            int(d.get("offset", 1)),
            tuple(int(i) for i in d.get("foreground_ids", ())),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> CategoryMap:
        return cls.from_dict(json.loads(Path(path).read_text()))
