"""Parity of an exported graph with the PyTorch model on the same inputs.

Dense tasks: the largest absolute difference of the logits (passes at ≤ ``LOGIT_TOLERANCE``).
Detectors: instances are matched one to one (same label, best box IoU ≥ 0.5, highest scores first);
passes when every instance on both sides is matched, matched boxes differ by at most ``BOX_TOLERANCE_PX``
pixels in every coordinate and matched masks (> 0.5) overlap with IoU ≥ ``MASK_MIN_IOU``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOGIT_TOLERANCE = 1e-3
BOX_TOLERANCE_PX = 1.0
MASK_MIN_IOU = 0.99
_MATCH_IOU = 0.5


def dense_parity(pairs: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> dict[str, Any]:
    """`pairs` of (PyTorch outputs, exported outputs) → ``{max_abs_diff, passed, ...}``."""
    diff = max(float(np.abs(a - b).max()) for ref, got in pairs for a, b in zip(ref, got, strict=True))
    return {"kind": "logits", "inputs": len(pairs), "max_abs_diff": diff, "tolerance": LOGIT_TOLERANCE,
            "passed": diff <= LOGIT_TOLERANCE}


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N×4 xyxy) with every box in b (M×4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_instances(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    """One image's detections, PyTorch (`ref`) vs exported (`got`): [boxes, labels, scores, (masks)]."""
    rb, rl, rs = ref[:3]
    gb, gl, gs = got[:3]
    iou = _box_iou(rb, gb) if len(rb) and len(gb) else np.zeros((len(rb), len(gb)))
    taken: set[int] = set()
    box_diff, score_diff, mask_ious = 0.0, 0.0, []
    matched = 0
    for i in np.argsort(-rs):
        candidates = [j for j in range(len(gb)) if j not in taken and gl[j] == rl[i] and iou[i, j] >= _MATCH_IOU]
        if not candidates:
            continue
        j = max(candidates, key=lambda c: iou[i, c])
        taken.add(j)
        matched += 1
        box_diff = max(box_diff, float(np.abs(rb[i] - gb[j]).max()))
        score_diff = max(score_diff, abs(float(rs[i]) - float(gs[j])))
        if len(ref) > 3:
            a, b = ref[3][i] > 0.5, got[3][j] > 0.5
            union = np.logical_or(a, b).sum()
            mask_ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return {"torch": len(rb), "exported": len(gb), "matched": matched, "max_box_diff_px": box_diff,
            "max_score_diff": score_diff, "min_mask_iou": min(mask_ious) if mask_ious else None}


def detection_parity(pairs: list[tuple[list[np.ndarray], list[np.ndarray]]]) -> dict[str, Any]:
    images = [match_instances(ref, got) for ref, got in pairs]
    all_matched = all(r["matched"] == r["torch"] == r["exported"] for r in images)
    box_diff = max((r["max_box_diff_px"] for r in images), default=0.0)
    mask_ious = [r["min_mask_iou"] for r in images if r["min_mask_iou"] is not None]
    min_iou = min(mask_ious) if mask_ious else None
    passed = all_matched and box_diff <= BOX_TOLERANCE_PX and (min_iou is None or min_iou >= MASK_MIN_IOU)
    return {"kind": "instances", "inputs": len(pairs), "instances_torch": sum(r["torch"] for r in images),
            "instances_exported": sum(r["exported"] for r in images), "matched": sum(r["matched"] for r in images),
            "max_box_diff_px": box_diff, "min_mask_iou": min_iou, "box_tolerance_px": BOX_TOLERANCE_PX,
            "mask_min_iou": MASK_MIN_IOU, "passed": passed, "per_image": images}
