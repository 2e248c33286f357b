"""What an exported graph takes and gives, per task family, and the preprocessing written beside it.

- classification / semantic / binary: input ``images`` float32 N×C×H×W, already preprocessed (resize or
  letterbox to the training size, RGB/255, ImageNet mean/std — ``preprocessing.json`` says exactly);
  output ``logits`` N×K (classification) or N×K×H×W (segmentation; binary: K = 1, foreground = logit > 0).
- instance / detection: input ``image`` float32 3×H×W RGB in 0..1, any size, one image per call
  (torchvision's detectors normalise and resize inside the graph); outputs ``boxes`` (N×4 xyxy, input
  pixels), ``labels`` (N, model labels: see ``classes.json``), ``scores`` (N) and, for instance
  segmentation, ``masks`` (N×1×H×W probabilities; > 0.5 is the mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from segpipe.data.augment import build_transform
from segpipe.data.sample import Sample
from segpipe.models.adapter import IMAGENET_MEAN, IMAGENET_STD, normalise
from segpipe.task_kinds import traits

DYNAMIC_CHOICES = ("batch", "size")


@dataclass(frozen=True)
class GraphSpec:
    task: str
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)

    @property
    def detection(self) -> bool:
        return traits(self.task).instances


def graph_spec(task: str, dynamic: tuple[str, ...]) -> GraphSpec:
    """Names and dynamic axes of the graph for `task`; `dynamic` ⊆ {"batch", "size"} ("size": segmentation
    only — classifiers take image_size × image_size; the detectors always take any size, one image a call)."""
    kind = traits(task)
    if kind.instances:
        outputs = ["boxes", "labels", "scores"] + (["masks"] if kind.instance_masks else [])
        axes = {"image": {1: "height", 2: "width"}, **{o: {0: "instances"} for o in outputs}}
        return GraphSpec(task, ["image"], outputs, axes)
    axes_in: dict[int, str] = {}
    axes_out: dict[int, str] = {}
    if "batch" in dynamic:
        axes_in[0] = axes_out[0] = "batch"
    # classification always resizes to image_size: a fixed size also lets cnn_small's adaptive pooling export
    if "size" in dynamic and kind.target != "class_id":
        axes_in |= {2: "height", 3: "width"}
        axes_out |= {2: "height", 3: "width"}
    axes = {k: v for k, v in (("images", axes_in), ("logits", axes_out)) if v}
    return GraphSpec(task, ["images"], ["logits"], axes)


def preprocessing(task: str, in_channels: int, image_size: int, model_params: dict[str, Any]) -> dict[str, Any]:
    """The recipe a deployment applies before calling the graph (``preprocessing.json``)."""
    kind = traits(task)
    if kind.instances:
        return {
            "input": "image: float32 3×H×W, RGB, values 0..1 (uint8 / 255), any size, one image per call",
            "inside_the_graph": "ImageNet mean/std normalisation; resize so the shorter side is min_size "
            "(longer side at most max_size); boxes and masks come back in input pixels",
            "min_size": model_params.get("min_size", 800),
            "max_size": model_params.get("max_size", 1333),
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
    resize = (
        "resize to image_size × image_size (bilinear)"
        if kind.target == "class_id"
        else "letterbox: scale the longer side to image_size (bilinear, aspect kept), pad bottom/right with black "
        "(0) to image_size × image_size; crop the logits back to the scaled image and resize them (bilinear) "
        "to the original size before the decision"
    )
    return {
        "input": f"images: float32 N×{in_channels}×H×W, RGB, NCHW",
        "resize": resize,
        "image_size": image_size,
        "scale": "pixel values 0..255 (uint8), then (x - mean) / std",
        "mean": [round(m, 4) for m in IMAGENET_MEAN],
        "std": [round(s, 4) for s in IMAGENET_STD],
        "channels": "grey = mean of R, G, B, with the mean of the statistics" if in_channels == 1 else "RGB",
        "output": "logits N×K" if kind.target == "class_id" else (
            "logits N×1×H×W; foreground = logit > 0" if kind.single_foreground else "logits N×K×H×W; label = arg-max"),
    }


def model_inputs(
    task: str, in_channels: int, images: list[np.ndarray], image_size: int, augment: Any
) -> list[torch.Tensor]:
    """The graph inputs for H×W×3 uint8 RGB `images`: one batch N×C×S×S (dense tasks), or one 3×H×W
    tensor per image (detectors)."""
    if traits(task).instances:
        return [torch.from_numpy(im).permute(2, 0, 1).float().div(255) for im in images]
    transform = build_transform(augment, task, image_size, train=False)
    arrays = np.stack([transform(Sample(image=im, image_id=i)).image for i, im in enumerate(images)])
    tensor = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return [normalise(tensor, in_channels)]


@torch.no_grad()
def torch_outputs(model: torch.nn.Module, spec: GraphSpec, x: torch.Tensor) -> list[np.ndarray]:
    """The eager model's outputs for one graph input, in the graph's output order."""
    model.eval()
    if spec.detection:
        result = model([x])[0]
        return [result[name].numpy() for name in spec.output_names]
    return [model(x).numpy()]
