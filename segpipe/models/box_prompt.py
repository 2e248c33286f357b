"""Box-to-mask assist: the mask of the object inside a box an annotator drew, from the team's own Mask
R-CNN — its mask head run on the given box instead of on the detector's proposals.

The box goes through the same path a proposal does (torchvision's ``RoIHeads``): the image is resized
by the model's own transform, the box scaled with it, RoI-aligned features feed the box head (which
names the class when the annotator did not) and the mask head, and the 28×28 mask is pasted back into
the box at the image's original size. One backbone pass per request; a cached model answers in the
time of that pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.roi_heads import paste_masks_in_image

from segpipe.errors import ConfigError, DataError

MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class BoxMask:
    mask: np.ndarray  # H×W bool, the image's own size
    label: int  # contiguous model label (1..K)
    score: float  # the box head's probability of that label for this box


def mask_for_box(model: nn.Module, image: np.ndarray, box: tuple[float, float, float, float],
                 label: int | None = None) -> BoxMask:
    """The object's mask inside ``box`` (x1, y1, x2, y2 in ``image`` pixels) of an H×W×3 uint8 image.

    ``label`` (contiguous, 1..K) picks the mask channel, as when the annotator chose the label before
    drawing; None lets the box head choose the most likely foreground class.
    """
    heads = getattr(model, "roi_heads", None)
    if heads is None or not getattr(heads, "has_mask", lambda: False)():
        raise ConfigError("box-to-mask needs an instance-segmentation model (Mask R-CNN); this model has no mask head")
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise DataError(f"box {tuple(box)} covers no pixel of the {width}×{height} image")
    device = next(model.parameters()).device
    model.eval()
    rcnn: Any = model  # torchvision's GeneralizedRCNN, untyped: its parts are reached as Any
    with torch.no_grad():
        tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(device).float().div_(255.0)
        images, _ = rcnn.transform([tensor])
        features = rcnn.backbone(images.tensors)
        resized_h, resized_w = images.image_sizes[0]
        scale = torch.tensor([resized_w / width, resized_h / height] * 2, device=device)
        original = torch.tensor([[x1, y1, x2, y2]], device=device)
        boxes = [original * scale]
        box_features = heads.box_head(heads.box_roi_pool(features, boxes, images.image_sizes))
        class_logits, _ = heads.box_predictor(box_features)
        probs = class_logits.softmax(dim=-1)[0]
        if label is None:
            label = int(probs[1:].argmax()) + 1
        elif not 1 <= label < probs.numel():
            raise DataError(f"label {label} is outside the model's labels 1..{probs.numel() - 1}")
        mask_logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, boxes, images.image_sizes)))
        probabilities = mask_logits[:, label : label + 1].sigmoid()
        pasted = paste_masks_in_image(probabilities, original, (height, width))
    return BoxMask(mask=(pasted[0, 0] > MASK_THRESHOLD).cpu().numpy(), label=label, score=float(probs[label]))
