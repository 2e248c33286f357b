"""Acceptance check for the first GPU machine: one table, in a few minutes.

    python bench/gpu_check.py [--quick]

On a machine without a CUDA GPU it says so and exits 0. With one, it checks (each row one line of the
table; a failing check says why and the others go on):

1. train steps on CUDA with AMP bf16 and fp16 for each model family — classifier (resnet18), U-Net
   (smp, resnet18 encoder), Mask R-CNN (resnet18-FPN): segpipe's ``fit`` against a bare PyTorch loop
   (same model, batches, optimizer, autocast), images/s of both and the ratio, peak GPU memory;
2. predict throughput: ``segpipe.engine.predict.predict_items`` of a trained U-Net over a folder;
3. ``segpipe worker --gpus <every id>``: one worker per GPU, each seeing only its own device;
4. a queued training with ``resources.gpus_per_node`` = the GPUs here (1-node DDP under the elastic
   agent, NCCL) through a real worker and an embedded store and broker (SQLite);
5. ONNX Runtime on CUDA (the exported U-Net), when onnxruntime-gpu is installed.

Ends with one JSON line of figures (bench convention).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine, print_table  # noqa: E402

Row = list[Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per measurement")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"no CUDA GPU on this machine (torch {torch.__version__}, torch.cuda.is_available() is False): "
              "nothing to check; run this on a GPU host")
        emit({"bench": "gpu_check", "gpu": None, "machine": machine()})
        return
    steps = 5 if args.quick else 20
    started = time.monotonic()
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        for dtype in ("bf16", "fp16"):
            for family in ("classifier", "unet", "maskrcnn"):
                _check(rows, figures, f"train {family} {dtype}", lambda f=family, d=dtype: train_steps(f, d, steps))
        _check(rows, figures, "predict unet", lambda: predict_throughput(work, steps))
        _check(rows, figures, "worker --gpus", lambda: worker_gpus(work))
        _check(rows, figures, "queued DDP job", lambda: queued_ddp(work))
        _check(rows, figures, "onnxruntime CUDA", lambda: onnx_cuda(work, steps))
    info = machine()
    print_table(f"GPU check: {torch.cuda.device_count()} x {info['device']}, torch {torch.__version__}, "
                f"{time.monotonic() - started:.0f} s", ["check", "result", "segpipe", "bare", "ratio", "peak MiB"], rows)
    emit({"bench": "gpu_check", "machine": info, "gpus": torch.cuda.device_count(), "results": figures})


def _check(rows: list[Row], figures: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    try:
        got = fn()
    except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
        traceback.print_exc()
        rows.append([name, f"FAILED: {type(e).__name__}: {str(e)[:120]}", "", "", "", ""])
        figures[name] = {"error": f"{type(e).__name__}: {e}"}
        return
    figures[name] = got
    rows.append([name, got.get("result", "ok"), _fmt(got.get("segpipe")), _fmt(got.get("bare")),
                 _fmt(got.get("ratio"), ".2f"), _fmt(got.get("peak_mib"), ".0f")])


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


# -- 1. training steps ---------------------------------------------------------------------------------


def _family_case(family: str, steps: int) -> dict[str, Any]:
    from engine_overhead import instance_case, semantic_case, shape_batches

    from segpipe.config import ModelConfig
    from segpipe.models import build_model

    if family == "unet":
        return semantic_case(256, 8, steps)
    if family == "maskrcnn":
        return instance_case(256, 4, steps)
    batches = shape_batches("classification", 224, 16, steps)
    model = build_model(ModelConfig(name="resnet18"), "classification", 4)
    from segpipe.models.adapter import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def bare_loss(m: torch.nn.Module, b: dict[str, Any]) -> torch.Tensor:
        x = (b["images"].float() - mean.to(b["images"].device)) / std.to(b["images"].device)
        return torch.nn.functional.cross_entropy(m(x), b["labels"])

    return {"name": "resnet18 classification 224px b16", "task": "classification", "labels": 4, "model": model,
            "batches": batches, "bare_loss": bare_loss}


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


def train_steps(family: str, amp: str, steps: int) -> dict[str, Any]:
    """segpipe's fit vs a bare autocast loop on cuda:0; images/s of both, peak memory of segpipe's side."""
    from segpipe.config import TrainConfig
    from segpipe.engine.train import TrainContext, build_optimizer, fit
    from segpipe.models import get_adapter

    device = torch.device("cuda", 0)
    case = _family_case(family, steps)
    batch = len(case["batches"][0]["image_ids"])
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-4, scheduler="none", amp=amp, device="cuda")
    seg_model = case["model"].to(device)
    bare_model = copy.deepcopy(seg_model)
    seg_opt, bare_opt = build_optimizer(seg_model, cfg), build_optimizer(bare_model, cfg)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    ctx = TrainContext(model=seg_model, adapter=get_adapter(case["task"], num_labels=case["labels"]),
                       optimizer=seg_opt, scheduler=None, cfg=cfg, device=device, monitor="loss",
                       batches_per_epoch=len(case["batches"]), scaler=scaler)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    bare_scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def segpipe_pass() -> float:
        ctx.cfg = cfg.model_copy(update={"epochs": ctx.state.epoch + 1})
        torch.cuda.synchronize()
        t = time.perf_counter()
        fit(ctx, case["batches"], [])
        torch.cuda.synchronize()
        return time.perf_counter() - t

    def bare_pass() -> float:
        bare_model.train()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for batch in case["batches"]:
            b = _to(batch, device)
            with torch.autocast("cuda", dtype=dtype):
                loss = case["bare_loss"](bare_model, b)
            if bare_scaler is not None:
                bare_scaler.scale(loss).backward()
                bare_scaler.step(bare_opt)
                bare_scaler.update()
            else:
                loss.backward()
                bare_opt.step()
            bare_opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    segpipe_pass(), bare_pass()  # warm-up: cudnn autotune, allocator
    torch.cuda.reset_peak_memory_stats()
    seg_times, bare_times = [], []
    for _ in range(3):
        seg_times.append(segpipe_pass())
        bare_times.append(bare_pass())
    images = batch * len(case["batches"])
    seg, bare = images / min(seg_times), images / min(bare_times)
    return {"result": case["name"], "segpipe": seg, "bare": bare, "ratio": seg / bare,
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20, "unit": "images/s"}


# -- 2. prediction -------------------------------------------------------------------------------------


def _trained_unet(work: Path) -> Path:
    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.runner import train

    run = work / "unet-run"
    if (run / "best.pt").is_file() or (run / "last.pt").is_file():
        return run
    coco = make_shapes_coco(work / "shapes", n_images=16, size=(128, 128), seed=1)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    train(from_dict({"task": "binary", "data": {"train": source, "val": source, "num_workers": 0},
                     "augment": {"preset": "none"},
                     "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
                     "train": {"device": "cuda", "epochs": 1, "batch_size": 4, "image_size": 128, "amp": "bf16"},
                     "output_dir": str(run)}), show_progress=False)
    return run


def predict_throughput(work: Path, steps: int) -> dict[str, Any]:
    from segpipe.config import PredictConfig
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.predict import image_items, load_model, predict_items

    loaded = load_model(_trained_unet(work), "cuda")
    coco = make_shapes_coco(work / "predict", n_images=16 * steps, size=(256, 256), seed=3)
    items = image_items(coco.images)
    cfg = PredictConfig(batch_size=16)
    list(predict_items(loaded, items[:16], cfg))  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    done = sum(1 for _ in predict_items(loaded, items, cfg))
    torch.cuda.synchronize()
    return {"result": f"{done} images 256 px", "segpipe": done / (time.perf_counter() - t), "unit": "images/s"}


# -- 3, 4. workers -------------------------------------------------------------------------------------


def _env(work: Path, name: str) -> dict[str, str]:
    home = work / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(SEGPIPE_HOME=str(home), SEGPIPE_DATA_ROOTS=str(work), SEGPIPE_ADVERTISE_HOST="127.0.0.1",
               SEGPIPE_LEASE_SECONDS="10", SEGPIPE_HEARTBEAT_SECONDS="2", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


def _wait_log(proc: subprocess.Popen[bytes], log: Path, needle: str, count: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.is_file() else ""
        if text.count(needle) >= count:
            return text
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{needle!r} seen {text.count(needle)}/{count} times:\n{text[-2000:]}")
        time.sleep(0.5)


def worker_gpus(work: Path) -> dict[str, Any]:
    """``segpipe worker --gpus 0,1,…``: every child starts, each with its own CUDA_VISIBLE_DEVICES."""
    from segpipe.processes import stop_process

    ids = ",".join(str(i) for i in range(torch.cuda.device_count()))
    log = work / "gpus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--gpus", ids, "--queues", "gpu",
                                 "--reconcile-every", "0"], env=_env(work, "gpus-home"), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        text = _wait_log(proc, log, " ready.", torch.cuda.device_count(), 180)
    finally:
        stop_process(proc, 30)
    seen = sorted({line.split("CUDA_VISIBLE_DEVICES=")[1].split()[0].rstrip(",") for line in text.splitlines()
                   if "CUDA_VISIBLE_DEVICES=" in line})  # each worker logs its devices (segpipe.worker)
    return {"result": f"{text.count(' ready.')} workers ready; CUDA_VISIBLE_DEVICES seen: {', '.join(seen) or '?'}"}


def queued_ddp(work: Path) -> dict[str, Any]:
    """A train job with gpus_per_node = every GPU here, through a real worker (embedded SQLite store/broker)."""
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.processes import stop_process
    from segpipe.settings import Settings
    from segpipe.stores import Stores

    gpus = torch.cuda.device_count()
    coco = make_shapes_coco(work / "ddp-data", n_images=32, size=(128, 128), seed=5)
    env = _env(work, "ddp-home")
    settings = Settings(home=Path(env["SEGPIPE_HOME"]), data_roots=[work])
    stores = Stores.from_settings(settings)
    from segpipe import service
    from workers.celery_app import create_app

    celery = create_app(settings)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    config = {"task": "binary", "data": {"train": source, "val": source, "num_workers": 2},
              "augment": {"preset": "none"},
              "model": {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
              "train": {"device": "cuda", "epochs": 2, "batch_size": 4, "image_size": 128, "amp": "bf16",
                        "sync_batchnorm": gpus > 1},
              "resources": {"gpus_per_node": gpus, "join_timeout": 60, "max_restarts": 0}}
    job = service.submit(stores, celery, settings, "train", config)
    log = work / "ddp-worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--queues", "gpu",
                                 "--reconcile-every", "5"], env=env, stdout=out, stderr=subprocess.STDOUT)
    t = time.monotonic()
    try:
        while (row := stores.jobs.get(job.id)).state not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() - t > 240 or proc.poll() is not None:
                raise RuntimeError(f"job {job.id} {row.state} after {time.monotonic() - t:.0f} s:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(1)
    finally:
        stop_process(proc, 30)
        celery.close()
        stores.close()
    if row.state != "succeeded":
        raise RuntimeError(f"job {job.id} {row.state}: {row.error}")
    progress = row.progress or {}
    return {"result": f"{gpus} rank(s), {progress.get('epoch')} epochs in {time.monotonic() - t:.0f} s, "
                      f"dice {progress.get('metrics', {}).get('dice', '?')}",
            "segpipe": progress.get("images_per_s"), "unit": "images/s (rank 0)"}


# -- 5. ONNX Runtime -----------------------------------------------------------------------------------


def onnx_cuda(work: Path, steps: int) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"result": "skipped: onnxruntime not installed"}
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"result": f"skipped: no CUDAExecutionProvider ({', '.join(ort.get_available_providers())}); "
                          "install onnxruntime-gpu"}
    from segpipe.engine.predict import load_model
    from segpipe.model_export import export_model

    run = _trained_unet(work)
    path = export_model(run, work / "unet-onnx", "onnx").model_file
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    name = session.get_inputs()[0].name
    x = torch.randint(0, 255, (8, 3, 128, 128), dtype=torch.uint8)
    feed = {name: x.numpy() if "uint8" in session.get_inputs()[0].type else x.float().numpy()}
    session.run(None, feed)
    t = time.perf_counter()
    for _ in range(steps):
        session.run(None, feed)
    ort_rate = 8 * steps / (time.perf_counter() - t)
    model = load_model(run, "cuda").model
    xt = x.cuda().float()
    with torch.inference_mode():
        model(xt)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            model(xt)
        torch.cuda.synchronize()
    torch_rate = 8 * steps / (time.perf_counter() - t)
    return {"result": "unet 128 px b8, CUDAExecutionProvider", "segpipe": ort_rate, "bare": torch_rate,
            "ratio": ort_rate / torch_rate, "unit": "images/s (onnxruntime vs torch fp32)"}


if __name__ == "__main__":
    main()
