"""``segpipe validate --plots DIR``: the dataset summary picture, for COCO, mask folders and class folders."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from segpipe.cli import app
from segpipe.cli.dataset_plots import _config_from_paths
from segpipe.data.images import read_image
from segpipe.data.sources import build_source
from segpipe.data.summary import dataset_stats
from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco

runner = CliRunner()


def _summary(args: list[str], out: Path) -> None:
    result = runner.invoke(app, ["validate", *args, "--plots", str(out)])
    assert result.exit_code == 0, result.output
    assert f"dataset summary: {out / 'dataset_summary.png'}" in result.output
    assert read_image(out / "dataset_summary.png").shape[1] > 1000


def test_coco_summary_counts_what_training_sees(tmp_path: Path) -> None:
    coco = make_shapes_coco(tmp_path / "coco", n_images=10, size=(64, 96), seed=4)
    _summary(["--images", str(coco.images), "--annotations", str(coco.annotations)], tmp_path / "plots")
    config = _config_from_paths({"images": coco.images, "annotations": coco.annotations}, None, None)
    source = build_source(config.data.train, config.data, "instance")
    stats = dataset_stats(source, "train")
    assert stats.images == 10 and stats.image_sizes == [(64, 96)] * 10
    assert set(stats.images_per_class) <= set(source.category_map.names)  # names, never "background"
    objects = sum(len(source.load(i).labels) for i in range(len(source)))
    assert sum(stats.objects_per_image) == objects == len(stats.object_sides)
    assert all(0 < s < 96 for s in stats.object_sides)


def test_mask_and_class_folder_summaries(tmp_path: Path) -> None:
    images, masks = make_mask_folders(tmp_path / "masks", n_images=4, size=(48, 64), seed=1)
    _summary(["--images", str(images), "--masks", str(masks), "--task", "semantic",
              "--classes", "background,circle,square,triangle"], tmp_path / "p1")
    root = make_class_folders(tmp_path / "classes", per_class=3, size=(32, 32))
    _summary(["--root", str(root)], tmp_path / "p2")
    config = _config_from_paths({"root": root}, None, None)
    stats = dataset_stats(build_source(config.data.train, config.data, "classification"), "train")
    assert sum(stats.images_per_class.values()) == stats.images == len(stats.image_sizes)
    assert not stats.has_objects
