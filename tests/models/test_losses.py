"""Dense losses: ignored pixels do not count, perfect predictions score ~0, empty cases stay finite."""

from __future__ import annotations

import torch

from segpipe.models import losses

IGNORE = 255


def _target() -> torch.Tensor:
    t = torch.zeros(2, 8, 8, dtype=torch.long)
    t[:, 2:5, 2:5] = 1
    t[1, 5:, 5:] = 2
    t[:, 0, :] = IGNORE
    return t


def test_multiclass_losses_ignore_ignored_pixels() -> None:
    torch.manual_seed(0)
    target = _target()
    logits = torch.randn(2, 3, 8, 8)
    changed = logits.clone()
    changed[:, :, 0, :] = 50 * torch.randn(2, 3, 8)  # only where target is ignored
    for fn in (losses.masked_cross_entropy, losses.multiclass_dice):
        assert torch.allclose(fn(logits, target, IGNORE), fn(changed, target, IGNORE))


def test_multiclass_losses_near_zero_when_perfect() -> None:
    target = _target()
    clean = torch.where(target == IGNORE, 0, target)
    logits = 30 * torch.nn.functional.one_hot(clean, 3).permute(0, 3, 1, 2).float()
    assert losses.masked_cross_entropy(logits, target, IGNORE) < 1e-6
    assert losses.multiclass_dice(logits, target, IGNORE) < 1e-4
    assert losses.multiclass_dice(-logits, target, IGNORE) > 0.9


def test_dice_leaves_out_classes_absent_from_the_batch() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.stack([(target[0] == c).float() for c in range(3)])[None] * 30
    # class 2 is absent from the target: its (zero) Dice must not count against the prediction
    assert losses.multiclass_dice(perfect, target, IGNORE) < 1e-4


def test_binary_losses_ignore_ignored_pixels_and_score_perfect_maps() -> None:
    target = _target().clamp(max=1)
    target[:, 0, :] = IGNORE
    logits = torch.where(target == 1, 20.0, -20.0)
    logits[:, 0, :] = 20.0  # confidently "wrong" where ignored: must not matter
    assert losses.masked_bce(logits, target, IGNORE) < 1e-6
    assert losses.binary_dice(logits, target, IGNORE) < 1e-4
    assert losses.masked_bce(-logits, target, IGNORE) > 10


def test_all_ignored_or_no_foreground_stays_finite_with_gradient() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), IGNORE)
    total = losses.masked_cross_entropy(logits, target, IGNORE) + losses.multiclass_dice(
        logits, target, IGNORE
    )
    b_logits = torch.randn(1, 4, 4, requires_grad=True)
    background = torch.zeros(1, 4, 4, dtype=torch.long)
    total = (
        total + losses.masked_bce(b_logits, target, IGNORE) + losses.binary_dice(b_logits, background, IGNORE)
    )
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(b_logits.grad).all()
    assert losses.binary_dice(b_logits, background, IGNORE) == 0
