"""``segpipe export``: a trained model as a deployable graph, checked against PyTorch.

``export_model(checkpoint, out_dir, fmt)`` writes into `out_dir`::

    model.onnx | model.ts   the graph (see graph.py for its inputs and outputs per task)
    classes.json            the category map: model label ↔ dataset category id and name
    preprocessing.json      what to do to an image before the graph (mean/std, resize rule, layout)
    parity.json             the check run by the export: PyTorch vs the exported file on the same inputs
    export.json             all of the above in one manifest (format, task, source checkpoint, files)

The parity check runs the exported file (onnxruntime for ONNX, torch.jit.load for TorchScript) on the
given images — or, without any, on seeded random images — next to the eager model; an export whose
check fails is still written, with ``passed: false``, and the caller decides (the CLI exits 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from segpipe.errors import ConfigError
from segpipe.model_export.formats import MODEL_EXPORT_FORMATS, ExportError, ExportFormat
from segpipe.model_export.graph import DYNAMIC_CHOICES, graph_spec, model_inputs, preprocessing, torch_outputs
from segpipe.model_export.parity import dense_parity, detection_parity
from segpipe.vocabulary import RunFiles

__all__ = ["MODEL_EXPORT_FORMATS", "ExportError", "ExportFormat", "ExportResult", "export_model", "record_export"]


@dataclass
class ExportResult:
    out_dir: Path
    model_file: Path
    manifest: dict[str, Any]

    @property
    def parity(self) -> dict[str, Any]:
        return self.manifest["parity"]


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    fmt: str,
    *,
    image_size: int | None = None,
    dynamic: tuple[str, ...] = DYNAMIC_CHOICES,
    images: list[np.ndarray] | None = None,
    check_images: int = 2,
    seed: int = 0,
) -> ExportResult:
    """Export the model of a segpipe checkpoint / run directory (see the module doc). `images`: H×W×3
    uint8 RGB arrays for the parity check (at most `check_images` are used)."""
    from segpipe.engine.predict import load_model

    exporter = MODEL_EXPORT_FORMATS.get(fmt)
    unknown = set(dynamic) - set(DYNAMIC_CHOICES)
    if unknown:
        raise ConfigError(f"dynamic axes {sorted(unknown)}: choose from {', '.join(DYNAMIC_CHOICES)}")
    loaded = load_model(checkpoint, device="cpu")
    config, task = loaded.config, loaded.task
    size = image_size or config.train.image_size
    spec = graph_spec(task, dynamic)
    if not images:
        rng = np.random.default_rng(seed)
        images = [rng.integers(0, 256, size=(size, size + 16 * i, 3), dtype=np.uint8) for i in range(check_images)]
        source = f"{len(images)} seeded random images"
    else:
        images = images[:check_images]
        source = f"{len(images)} given images"
    inputs = model_inputs(task, config.model.in_channels, images, size, config.augment)
    # with a dynamic batch: export with batch 1, check with the whole batch (the axis is exercised too)
    example = inputs[0][:1] if not spec.detection and "batch" in dynamic else inputs[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / exporter.file_name
    model = loaded.model.eval()
    exporter.write(model, spec, example, model_file)
    run = exporter.load(model_file, spec)
    pairs = [(torch_outputs(model, spec, x), run(x)) for x in inputs]
    parity = detection_parity(pairs) if spec.detection else dense_parity(pairs)
    parity["images"] = source
    loaded.category_map.save(out / "classes.json")
    prep = preprocessing(task, config.model.in_channels, size, config.model.params)
    (out / "preprocessing.json").write_text(json.dumps(prep, indent=1))
    (out / "parity.json").write_text(json.dumps(parity, indent=1))
    manifest = {
        "format": fmt,
        "task": task,
        "model": config.model.name,
        "checkpoint": str(loaded.checkpoint),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {"model": model_file.name, "classes": "classes.json", "preprocessing": "preprocessing.json",
                  "parity": "parity.json"},
        "inputs": spec.input_names,
        "outputs": spec.output_names,
        "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in spec.dynamic_axes.items()},
        "image_size": size,
        "parity": {k: v for k, v in parity.items() if k != "per_image"},
    }
    (out / "export.json").write_text(json.dumps(manifest, indent=1))
    return ExportResult(out, model_file, manifest)


def record_export(run_dir: Path, result: ExportResult, base: Path | None = None) -> Path:
    """Add an export to ``exports.json`` of the run directory a checkpoint / model version lives in
    (one entry per format; a new export of a format replaces the older one). Paths are relative to
    `base` (the artifact root for model versions) when the export lies under it."""
    path = run_dir / RunFiles.EXPORTS
    entries = json.loads(path.read_text()) if path.is_file() else {}
    where = result.out_dir.resolve()
    if base is not None and where.is_relative_to(base.resolve()):
        where = where.relative_to(base.resolve())
    entries[result.manifest["format"]] = {"dir": str(where), "model": result.model_file.name,
                                          "created_at": result.manifest["created_at"],
                                          "parity": result.manifest["parity"]}
    path.write_text(json.dumps(entries, indent=1))
    return path
