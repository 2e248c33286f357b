"""The smoke datasets: every layout, separate train and val drawings, readable by the sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.config import DataConfig, SourceConfig
from segpipe.data.smoke import write_smoke_data
from segpipe.data.sources import build_source
from segpipe.errors import ConfigError


def test_every_layout_is_written_and_readable(tmp_path: Path) -> None:
    out = write_smoke_data(tmp_path / "smoke", n_train=6, n_val=3, seed=1)
    coco = DataConfig(train=SourceConfig(images=out.coco / "train" / "images",
                                         annotations=out.coco / "train" / "annotations.json"))
    for split, n in (("train", 6), ("val", 3)):
        for task in ("instance", "detection", "semantic", "binary"):
            src = SourceConfig(images=out.coco / split / "images", annotations=out.coco / split / "annotations.json")
            assert len(build_source(src, coco, task)) == n
        semantic = DataConfig(train=SourceConfig(root=tmp_path), classes=["circle", "square", "triangle"])
        src = SourceConfig(images=out.semantic / split / "images", masks=out.semantic / split / "masks")
        assert len(build_source(src, semantic, "semantic")) == n
        binary = DataConfig(train=SourceConfig(root=tmp_path), foreground_value=255)
        src = SourceConfig(images=out.binary / split / "images", masks=out.binary / split / "masks")
        sample = build_source(src, binary, "binary").load(0)
        assert set(sample.label_map.ravel().tolist()) <= {0, 1}
        classes = build_source(SourceConfig(root=out.classes / split), binary, "classification")
        assert list(classes.category_map.names) == ["circle", "square", "triangle"]
        assert len(classes) == 3 * (n // 3)


def test_val_images_differ_from_train_images(tmp_path: Path) -> None:
    out = write_smoke_data(tmp_path / "smoke", n_train=3, n_val=3)
    train = (out.semantic / "train" / "images" / "s000.png").read_bytes()
    val = (out.semantic / "val" / "images" / "s000.png").read_bytes()
    assert train != val


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not an empty folder"):
        write_smoke_data(tmp_path / "smoke")
    with pytest.raises(ConfigError, match="at least 3"):
        write_smoke_data(tmp_path / "other", n_train=2)
