"""Test-time augmentation and sliding windows, owned by the segmentation adapters."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segpipe.config import ModelConfig, PredictConfig
from segpipe.models import build_model, get_adapter
from segpipe.models.dense_inference import dihedral_average, tiled_logits


def _pixelwise(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel 'model': one logit, the mean of the channels."""
    return x.float().mean(dim=1, keepdim=True)


def _position(x: torch.Tensor) -> torch.Tensor:
    """A 'model' that only sees where a pixel is: its column index."""
    b, _, h, w = x.shape
    return torch.arange(w, dtype=torch.float32).expand(b, 1, h, w).clone()


def test_dihedral_average_undoes_each_view() -> None:
    x = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(dihedral_average(_pixelwise, x), _pixelwise(x))  # equivariant: unchanged
    averaged = dihedral_average(_position, x)[0, 0]
    # 8 views of a column-index map average to a map symmetric under every flip and rotation
    assert torch.allclose(averaged, averaged.flip(-1)) and torch.allclose(averaged, averaged.T)


def test_tiles_cover_the_image_with_either_border() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    whole = _pixelwise(torch.from_numpy(image).permute(2, 0, 1)[None])
    for border in ("zero", "mirror"):
        tiled = tiled_logits(_pixelwise, image, 16, 0.5, 4, border)
        assert tiled.shape == (1, 1, 37, 53) and torch.allclose(tiled, whole, atol=1e-5), border


def test_mirrored_borders_give_context_at_the_image_edge() -> None:
    """A 3×3 mean filter with zero padding: with mirrored borders the edge pixels of a flat image keep
    its value (context is image), with zero borders they darken."""
    image = np.full((32, 32, 3), 200, np.uint8)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.float().mean(dim=1, keepdim=True), torch.full((1, 1, 3, 3), 1 / 9), padding=1)

    mirror = tiled_logits(blur, image, 16, 0.5, 4, "mirror")
    zero = tiled_logits(blur, image, 16, 0.5, 4, "zero")
    assert torch.allclose(mirror, torch.full_like(mirror, 200.0), atol=1e-2)
    assert zero[0, 0, 0, 0] < 150


def test_segmentation_adapter_predicts_with_tta_and_tiles() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet", encoder_depth=3, decoder_channels=[8, 8, 8]), "binary", 2).eval()
    adapter = get_adapter("binary", num_labels=2)
    image = np.random.default_rng(1).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    transform = adapter.eval_transform(None, 32)
    cfg = PredictConfig(tta=True, tile_size=32, tile_border="mirror")
    kwargs: dict = {"transform": transform, "device": "cpu"}
    kwargs["autocast"] = lambda: torch.autocast("cpu", enabled=False)
    (tiled,) = adapter.predict_images(model, [image], ["a"], cfg, **kwargs)
    (plain,) = adapter.predict_images(model, [image], ["a"], PredictConfig(tta=True), **kwargs)
    assert tiled.label_map.shape == plain.label_map.shape == (40, 56)
    # TTA in evaluation: the same averaged logits as by hand
    batch = adapter.prepare({"images": torch.from_numpy(image[:32, :32]).permute(2, 0, 1)[None].contiguous(),
                             "label_maps": torch.zeros(1, 32, 32, dtype=torch.int64), "image_ids": ["a"], "meta": [{}]},
                            "cpu")
    adapter.tta = True
    _, (pred,) = adapter.eval_step(model, batch)
    with torch.no_grad():
        by_hand = dihedral_average(model, batch["images"])
    assert np.array_equal(pred.label_map, (by_hand[0, 0] > 0).numpy().astype(np.uint8))


def test_evaluation_at_native_resolution_with_tiles() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet", encoder_depth=3, decoder_channels=[8, 8, 8]), "binary", 2).eval()
    adapter = get_adapter("binary", num_labels=2)
    cfg = PredictConfig(tile_size=32, tile_overlap=0.5, tile_border="mirror", evaluate_tiled=True, tta=True)
    assert adapter.eval_transform(None, 32, 255, cfg) is None  # no letterbox: images stay at their size
    assert adapter.eval_transform(None, 32, 255, PredictConfig(tile_size=32)) is not None
    image = torch.from_numpy(np.random.default_rng(2).integers(0, 256, size=(1, 3, 40, 56), dtype=np.uint8))
    batch = adapter.prepare({"images": image, "label_maps": torch.ones(1, 40, 56, dtype=torch.int64),
                             "image_ids": ["a"], "meta": [{}]}, "cpu")
    adapter.configure_inference(cfg, evaluation=False)
    assert adapter.tiling is cfg and not adapter.tta  # training's validation: tiles, no TTA
    adapter.configure_inference(cfg, evaluation=True)
    losses, (pred,) = adapter.eval_step(model, batch)
    assert pred.label_map.shape == (40, 56) and set(losses) == {"loss_bce", "loss_dice"}
    with torch.no_grad():
        by_hand = tiled_logits(lambda x: dihedral_average(model, x), batch["images"][0], 32, 0.5, 4, "mirror")
    assert np.array_equal(pred.label_map, (by_hand[0, 0] > 0).numpy().astype(np.uint8))
