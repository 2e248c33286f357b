import dataclasses

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from segpipe.data.coco import CocoSource
from segpipe.data.dataset import TaskDataset, build_loader, collate
from segpipe.data.folders import ClassFolderSource, MaskFolderSource
from segpipe.data.sample import Sample
from segpipe.data.synthetic import make_class_folders, make_mask_folders, make_shapes_coco
from segpipe.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_coco(tmp_path_factory.mktemp("coco"), n_images=6, size=(32, 48), seed=1)


class Resize:
    """Deterministic Sample → Sample resize of the image only (enough for classification crops)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, sample: Sample) -> Sample:
        image = cv2.resize(sample.image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return dataclasses.replace(sample, image=image)


class SeededFlip:
    """A random horizontal flip of image and label map through albumentations, seedable like a Compose."""

    def __init__(self) -> None:
        self.compose = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
        self.seed: int | None = None

    def set_random_seed(self, seed: int) -> None:
        self.seed = seed
        self.compose.set_random_seed(seed)

    def __call__(self, sample: Sample) -> Sample:
        out = self.compose(image=sample.image, mask=sample.label_map)
        meta = {**sample.meta, "transform_seed": self.seed}
        return dataclasses.replace(sample, image=out["image"], label_map=out["mask"], meta=meta)


def _hflip(sample: Sample) -> Sample:
    # negative-stride views, as a transform may return them
    return dataclasses.replace(sample, image=sample.image[:, ::-1], label_map=sample.label_map[:, ::-1])


def _batches(loader) -> list[dict]:
    return list(loader)


def test_semantic_batch_format(shapes):
    source = CocoSource(shapes.images, shapes.annotations, "semantic")
    loader = build_loader(TaskDataset(source, None, "semantic"), batch_size=4, shuffle=False, num_workers=0, seed=0)
    batches = _batches(loader)
    assert [len(b["image_ids"]) for b in batches] == [4, 2]
    batch = batches[0]
    assert set(batch) == {"images", "image_ids", "label_maps", "meta"}
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (4, 3, 32, 48)
    assert batch["images"].is_contiguous()
    assert batch["label_maps"].dtype == torch.int64 and batch["label_maps"].shape == (4, 32, 48)
    assert batch["image_ids"] == source.image_ids[:4]
    for i in range(4):
        sample = source.load(i)
        assert torch.equal(batch["images"][i], torch.from_numpy(sample.image).permute(2, 0, 1))
        assert torch.equal(batch["label_maps"][i], torch.from_numpy(sample.label_map).long())
        assert batch["meta"][i] == sample.meta
    assert 255 in batches[1]["label_maps"].unique().tolist()  # the crowd region of the last image


def test_binary_batch_from_mask_folders(tmp_path):
    images, masks = make_mask_folders(tmp_path, n_images=3, size=(24, 24), binary=True)
    source = MaskFolderSource(images, masks, "binary", foreground_value=255)
    batch = next(iter(build_loader(TaskDataset(source, _hflip, "binary"), 3, False, 0, 0)))
    assert batch["images"].shape == (3, 3, 24, 24) and batch["label_maps"].dtype == torch.int64
    assert set(batch["label_maps"].unique().tolist()) == {0, 1}
    flipped = source.load(2).label_map[:, ::-1]
    assert torch.equal(batch["label_maps"][2], torch.from_numpy(flipped.copy()).long())


def test_classification_batches(tmp_path, shapes):
    root = make_class_folders(tmp_path, per_class=2, size=(20, 20))
    folders = TaskDataset(ClassFolderSource(root), None, "classification")
    batch = next(iter(build_loader(folders, 6, False, 0, 0)))
    assert set(batch) == {"images", "image_ids", "class_ids", "meta"}
    assert batch["images"].shape == (6, 3, 20, 20) and batch["images"].dtype == torch.uint8
    assert batch["class_ids"].dtype == torch.int64 and batch["class_ids"].tolist() == [0, 0, 1, 1, 2, 2]
    crops = CocoSource(shapes.images, shapes.annotations, "classification")
    batch = next(iter(build_loader(TaskDataset(crops, Resize(16), "classification"), 4, False, 0, 0)))
    assert batch["images"].shape == (4, 3, 16, 16) and batch["class_ids"].shape == (4,)
    assert [m["annotation_id"] for m in batch["meta"]] == [crops.load(i).meta["annotation_id"] for i in range(4)]


@pytest.mark.parametrize("task", ["instance", "detection"])
def test_instance_and_detection_batches(shapes, task):
    source = CocoSource(shapes.images, shapes.annotations, task)
    batch = next(iter(build_loader(TaskDataset(source, None, task), 6, False, 0, 0)))
    assert set(batch) == {"images", "image_ids", "targets", "meta"}
    assert isinstance(batch["images"], list) and len(batch["images"]) == 6
    total = 0
    for image, target in zip(batch["images"], batch["targets"], strict=True):
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 48)
        n = len(target["labels"])
        total += n
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
        assert target["labels"].dtype == torch.int64
        if task == "instance":
            assert set(target) == {"boxes", "labels", "masks"}
            assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, 32, 48)
        else:
            assert set(target) == {"boxes", "labels"}
    assert total > 0 and len(batch["targets"][0]["labels"]) == 0  # the first image is empty


def _signature(batches: list[dict]) -> list:
    return [(b["image_ids"], b["images"].clone(), b["label_maps"].clone()) for b in batches]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        ia == ib and torch.equal(xa, xb) and torch.equal(ya, yb) for (ia, xa, ya), (ib, xb, yb) in zip(a, b, strict=False)
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_batches(shapes, num_workers):
    def run(seed: int) -> tuple[list, list]:
        source = CocoSource(shapes.images, shapes.annotations, "semantic")
        loader = build_loader(TaskDataset(source, SeededFlip(), "semantic"), 2, True, num_workers, seed)
        epochs = [_batches(loader) for _ in range(2)]
        seeds = {m["transform_seed"] for b in epochs[0] for m in b["meta"]}
        return [_signature(e) for e in epochs], sorted(seeds)

    (first, second), seeds = run(seed=7)
    (again_first, again_second), again_seeds = run(seed=7)
    assert _same(first, again_first) and _same(second, again_second)
    assert seeds == again_seeds
    assert len(seeds) == max(num_workers, 1)  # each worker seeds its own transform differently
    assert not _same(first, second)  # a new epoch reshuffles and draws new augmentations
    (other, _), _ = run(seed=8)
    assert not _same(first, other)


def test_subset_and_loader_settings(shapes):
    dataset = TaskDataset(CocoSource(shapes.images, shapes.annotations, "binary"), None, "binary")
    loader = build_loader(Subset(dataset, [1, 3]), 2, False, 2, 0, drop_last=True)
    assert not loader.persistent_workers and loader.drop_last  # workers restart per epoch: see reseed_epoch
    assert loader.pin_memory == torch.cuda.is_available()
    batch = next(iter(loader))
    assert batch["image_ids"] == [dataset.source.image_ids[1], dataset.source.image_ids[3]]
    with pytest.raises(TypeError, match="needs a TaskDataset"):
        build_loader(list(range(3)), 1, False, 0, 0)


def test_batch_errors(shapes):
    crops = TaskDataset(CocoSource(shapes.images, shapes.annotations, "classification"), None, "classification")
    items = [crops[i] for i in range(len(crops))]
    sizes = {tuple(it["image"].shape) for it in items}
    assert len(sizes) > 1
    with pytest.raises(DataError, match="differ in size and cannot share a batch"):
        collate("classification")(items)
    with pytest.raises(ConfigError, match="unknown task"):
        collate("panoptic")
    as_float = lambda s: dataclasses.replace(s, image=s.image.astype(np.float32))  # noqa: E731
    broken = TaskDataset(crops.source, as_float, "classification")
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        broken[0]
    wrong = TaskDataset(crops.source, None, "semantic")
    with pytest.raises(DataError, match="semantic sample without label_map"):
        wrong[0]
