import pytest

from segpipe.config import DataConfig, SourceConfig
from segpipe.data.coco import CocoSource
from segpipe.data.folders import ClassFolderSource, MaskFolderSource
from segpipe.data.sources import Source, build_source
from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco
from segpipe.errors import ConfigError


def test_coco_layout_passes_data_options(tmp_path):
    shapes = make_shapes_coco(tmp_path, n_images=4, size=(32, 32))
    src = SourceConfig(images=shapes.images, annotations=shapes.annotations)
    data = DataConfig(train=src, categories=["square"], classification_source="image", crop_padding=0.3)
    source = build_source(src, data, "binary", exclude_images={1001}, exclude_annotations={100})
    assert isinstance(source, CocoSource) and isinstance(source, Source)
    assert source.category_map.foreground_ids == (7,)
    assert 1001 not in source.image_ids and len(source) == 3
    assert source.crop_padding == 0.3


def test_mask_folder_layout(tmp_path):
    images, masks = make_mask_folders(tmp_path, n_images=3, size=(16, 16))
    src = SourceConfig(images=images, masks=masks)
    data = DataConfig(train=src, classes=["circle", "square", "triangle"], ignore_index=250)
    source = build_source(src, data, "semantic")
    assert isinstance(source, MaskFolderSource) and source.ignore_index == 250
    without = build_source(src, data, "semantic", exclude_images={"s001"})
    assert isinstance(without, Source)
    assert without.image_ids == ["s000", "s002"] and len(without) == 2
    assert without.load(1).image_id == "s002" and without.image_path(1).name == "s002.png"
    assert without.category_map == source.category_map


def test_class_folder_layout(tmp_path):
    root = make_class_folders(tmp_path, per_class=1, size=(16, 16))
    src = SourceConfig(root=root)
    assert isinstance(build_source(src, DataConfig(train=src), "classification"), ClassFolderSource)
    with pytest.raises(ConfigError, match="only fits task classification"):
        build_source(src, DataConfig(train=src), "semantic")
