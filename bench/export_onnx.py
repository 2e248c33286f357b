"""Exported ONNX under onnxruntime vs the same model in PyTorch: predict throughput on the CPU.

    python bench/export_onnx.py [--quick] [--profile]

Each case writes a segpipe checkpoint (random weights: speed does not depend on them), exports it with
``segpipe.model_export.export_model`` (which also runs the parity check), then times, interleaved in one
process on the same preprocessed inputs:

  A. onnxruntime (CPUExecutionProvider, intra-op threads = torch's threads) on the exported graph;
  B. PyTorch eager forward under ``torch.no_grad`` (what ``segpipe predict`` runs).

Quoted: images/s medians and the median per-round ratio A/B (> 1: onnxruntime is faster).
``--profile`` also profiles onnxruntime's session on the Mask R-CNN graph (its own profiler, one row per
operator type: share of the session's operator time, calls, mean µs), which shows what bounds it:
the convolutions both sides run alike, or the detection ops (RoiAlign, NonMaxSuppression, TopK) and the
shape/control-flow nodes (Loop, If, Shape, Gather, Reshape…) that torchvision runs as eager Python/C++
and the exported graph runs node by node. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import emit, interleave, machine, print_table

from segpipe.data.categories import CategoryMap
from segpipe.data.synthetic import SHAPE_CATEGORIES
from segpipe.engine.predict import load_model
from segpipe.model_export import MODEL_EXPORT_FORMATS, export_model
from segpipe.model_export.graph import graph_spec, model_inputs
from tests.model_export.conftest import write_checkpoint

SHAPES = CategoryMap(tuple(c for c, _ in SHAPE_CATEGORIES), tuple(n for _, n in SHAPE_CATEGORIES), offset=1)
CLASSES = CategoryMap(SHAPES.ids, SHAPES.names, offset=0)


def run_case(name: str, task: str, model: dict[str, Any], cmap: CategoryMap, size: int, batch: int, n: int,
             rounds: int, folder: Path, profile: bool = False) -> dict[str, Any]:
    run = write_checkpoint(folder / name.split()[0], task, model, cmap, image_size=size)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(size * 3 // 4, size, 3), dtype=np.uint8) for _ in range(n)]
    result = export_model(run, folder / f"{name.split()[0]}-onnx", "onnx", images=images[:2], check_images=2)
    loaded = load_model(run, device="cpu")
    spec = graph_spec(task, ("batch", "size"))
    if spec.detection:
        inputs = model_inputs(task, 3, images, size, loaded.config.augment)
    else:
        whole = model_inputs(task, 3, images, size, loaded.config.augment)[0]
        inputs = [whole[i : i + batch] for i in range(0, n, batch)]
    ort_run = MODEL_EXPORT_FORMATS.get("onnx").load(result.model_file, spec)
    model_eval = loaded.model.eval()

    def onnx_pass() -> int:
        for x in inputs:
            ort_run(x)
        return n

    @torch.no_grad()
    def torch_pass() -> int:
        for x in inputs:
            model_eval([x]) if spec.detection else model_eval(x)
        return n

    r = interleave(onnx_pass, torch_pass, rounds)
    if profile:
        r["profile"] = profile_session(result.model_file, inputs)
    parity = result.parity
    check = (f"max|Δ| {parity['max_abs_diff']:.1e}" if parity["kind"] == "logits"
             else f"{parity['matched']}/{parity['instances_torch']} matched")
    return {"case": name, "onnxruntime_images_s": r["a_per_s"], "pytorch_images_s": r["b_per_s"],
            "ratio": r["ratio"], "ratio_min": r["ratio_min"], "ratio_max": r["ratio_max"],
            "parity_passed": parity["passed"], "parity": check, "profile": r.get("profile")}


def profile_session(model_file: Path, inputs: list[torch.Tensor]) -> list[dict[str, Any]]:
    """onnxruntime's own profile of the graph over ``inputs``: time per operator type, largest first."""
    import json
    from collections import defaultdict

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    options.profile_file_prefix = str(model_file.with_suffix(""))
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for x in inputs:
        session.run(None, {name: x.numpy()})
    events = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            total[op] += e["dur"]
            calls[op] += 1
    overall = sum(total.values()) or 1.0
    return [{"op": op, "share": us / overall, "calls": calls[op], "mean_us": us / calls[op]}
            for op, us in sorted(total.items(), key=lambda kv: -kv[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile onnxruntime's Mask R-CNN session")
    args = parser.parse_args()
    rounds, n = (3, 8) if args.quick else (7, 16)
    folder = Path(tempfile.mkdtemp(prefix="segpipe-bench-export-"))
    results = [
        run_case("resnet18 classification 128", "classification", {"name": "resnet18"}, CLASSES, 128, 8, n, rounds, folder),
        run_case("unet-resnet18 semantic 256", "semantic", {"name": "unet", "encoder": "resnet18"}, SHAPES, 256, 4, n,
                 rounds, folder),
        run_case("maskrcnn-resnet18-fpn 320×240", "instance",
                 {"name": "maskrcnn_resnet18_fpn", "min_size": 240, "max_size": 320, "box_detections_per_img": 20},
                 SHAPES, 320, 1, max(4, n // 4), rounds, folder, profile=args.profile),
    ]
    info = machine()
    print_table(
        f"predict throughput: onnxruntime vs PyTorch eager ({info['cpu_cores']} cores, {info['torch_threads']} torch "
        f"threads, {info['device']}, load {info['load_avg_1m']})",
        ["case", "onnxruntime img/s", "pytorch img/s", "ratio (median)", "min..max", "parity"],
        [[r["case"], f"{r['onnxruntime_images_s']:.2f}", f"{r['pytorch_images_s']:.2f}", f"{r['ratio']:.3f}",
          f"{r['ratio_min']:.3f}..{r['ratio_max']:.3f}", r["parity"]] for r in results],
    )
    for r in results:
        if r.get("profile"):
            print_table(f"onnxruntime operator time, {r['case']} (share of the session's operator time)",
                        ["op", "share", "calls", "mean µs"],
                        [[p["op"], f"{p['share']:.1%}", p["calls"], f"{p['mean_us']:.0f}"] for p in r["profile"][:15]])
    emit({"bench": "export_onnx", "machine": info, "results": results})


if __name__ == "__main__":
    main()
