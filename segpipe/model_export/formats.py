"""Export formats: one registered piece each (``MODEL_EXPORT_FORMATS``), found by name by ``segpipe export``.

A format writes the graph of a model to a file and loads that file back as a function from one graph
input to its outputs (numpy, in the graph's output order) — which is what the parity check runs.

- ``onnx``: torch's TorchScript-based ONNX exporter (the path torchvision supports for Mask/Faster
  R-CNN), opset 17, read back with onnxruntime on the CPU;
- ``torchscript``: ``torch.jit.trace`` for the dense models, ``torch.jit.script`` for torchvision's
  detectors (their data-dependent control flow does not trace); read back with ``torch.jit.load``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segpipe.errors import SegpipeError
from segpipe.model_export.graph import GraphSpec
from segpipe.registry import Registry
from segpipe.vocabulary import MODEL_EXPORT_FORMAT_NAMES

Runner = Callable[[torch.Tensor], list[np.ndarray]]
ONNX_OPSET = 17


class ExportError(SegpipeError):
    """The model could not be written in the requested format."""


@dataclass(frozen=True)
class ExportFormat:
    file_name: str
    write: Callable[[nn.Module, GraphSpec, torch.Tensor, Path], None]
    load: Callable[[Path, GraphSpec], Runner]


MODEL_EXPORT_FORMATS: Registry[ExportFormat] = Registry("model export format")


def _example_args(spec: GraphSpec, example: torch.Tensor) -> tuple[object, ...]:
    return ([example],) if spec.detection else (example,)


def _merge_levels_by_gather(levels: torch.Tensor, unmerged_results: list[torch.Tensor]) -> torch.Tensor:
    """The RoIs pooled per FPN level, back in the RoIs' order: one Gather through the inverse of the
    level-sorted order. torchvision's exporter version scatters every level into a zero tensor of all
    RoIs (ONNX ScatterElements over N×C×7×7 values, element by element: a quarter of onnxruntime's time
    on the light Mask R-CNN, `bench/export_onnx.py --profile`). Every RoI has exactly one level."""
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
    return torch.cat(unmerged_results, dim=0)[torch.argsort(order)]


@contextmanager
def _gather_merged_levels() -> Iterator[None]:
    from torchvision.ops import poolers

    original = poolers._onnx_merge_levels  # noqa: SLF001 - the exporter-only helper we replace while tracing
    poolers._onnx_merge_levels = _merge_levels_by_gather  # noqa: SLF001
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original  # noqa: SLF001


def _write_onnx(model: nn.Module, spec: GraphSpec, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), (_gather_merged_levels() if spec.detection else nullcontext()):
        warnings.simplefilter("ignore")  # the exporter's tracer warnings say nothing a user can act on
        try:
            torch.onnx.export(
                model, _example_args(spec, example), str(path), dynamo=False, opset_version=ONNX_OPSET,
                input_names=spec.input_names, output_names=spec.output_names, dynamic_axes=spec.dynamic_axes,
                do_constant_folding=True,
            )
        except Exception as e:  # noqa: BLE001 - the exporter raises many types; all mean "cannot export"
            raise ExportError(f"ONNX export of the {spec.task} model failed: {type(e).__name__}: {e}") from None


def _load_onnx(path: Path, spec: GraphSpec) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> list[np.ndarray]:
        return list(session.run(spec.output_names, {name: x.numpy()}))

    return run


def _write_torchscript(model: nn.Module, spec: GraphSpec, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph = torch.jit.script(model) if spec.detection else torch.jit.trace(model, example)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"TorchScript export of the {spec.task} model failed: {type(e).__name__}: {e}") from None
    graph.save(str(path))


def _load_torchscript(path: Path, spec: GraphSpec) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice: the format is the ask
        graph = torch.jit.load(str(path), map_location="cpu")
    graph.eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> list[np.ndarray]:
        if spec.detection:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "RCNN always returns a (Losses, Detections) tuple"
                out = graph([x])
            detections = out[1] if isinstance(out, tuple) else out  # scripted detectors return (losses, dets)
            return [detections[0][name].numpy() for name in spec.output_names]
        return [graph(x).numpy()]

    return run


MODEL_EXPORT_FORMATS.add("onnx", ExportFormat("model.onnx", _write_onnx, _load_onnx),
                         description="ONNX (opset 17), checked with onnxruntime")
MODEL_EXPORT_FORMATS.add("torchscript", ExportFormat("model.ts", _write_torchscript, _load_torchscript),
                         description="TorchScript (torch.jit), loadable from C++ libtorch or torch.jit.load")
# The CLI lists the names without importing torch (`segpipe.vocabulary.MODEL_EXPORT_FORMAT_NAMES`).
assert tuple(MODEL_EXPORT_FORMATS.names()) == MODEL_EXPORT_FORMAT_NAMES, "a model export format is not in the vocabulary"
