"""Box-to-mask latency: one drawn box → the object's mask, with the model already in memory (the
worker's model cache), against the model's full inference on the same image (the baseline a
pre-label takes), in the same process, interleaved.

    python bench/box_to_mask.py [--quick] [--size 96,512] [--threads 1]

The model is the demo's light Mask R-CNN (ResNet-18 FPN) with random weights — latency does not depend
on what the weights learned — at the demo's 96 px and at a photo-sized 512 px. Prints p50/p99 per size
and one JSON line.

    python bench/box_to_mask.py --through-backend --broker redis://127.0.0.1:6379/15 [--requests 50]

measures the whole interactive request instead: Label Studio's forwarded ``/ls/NAME@production/predict``
with a drawn rectangle in ``params.context``, over HTTP to a real API server (uvicorn) that queues a
``box-mask`` job on Redis for a real ``segpipe worker --queues interactive`` (one torch thread), the
model cached by the worker after a warm-up request. Each round also times ``mask_for_box`` in this
process on the same image and box (interleaved), so the backend's own cost is the difference. The
model is trained for one epoch first (a version needs a checkpoint segpipe wrote). The broker's
database is flushed: give one nobody else uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/ scripts are not modules

from segpipe.config import ModelConfig  # noqa: E402
from segpipe.models.box_prompt import mask_for_box  # noqa: E402
from segpipe.models.registry import build_model  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(size: int, requests: int, rng: np.random.Generator) -> dict[str, float]:
    model = build_model(ModelConfig(name="maskrcnn_resnet18_fpn", min_size=size, max_size=size,
                                    rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
                                    box_detections_per_img=10), "instance", 4)
    model.eval()
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    box_ms, full_ms = [], []
    mask_for_box(model, image, (5, 5, size / 2, size / 2))  # warm-up both paths
    with torch.no_grad():
        model([tensor])
    for i in range(requests):
        x1, y1 = rng.uniform(0, size * 0.6, 2)
        w, h = rng.uniform(size * 0.1, size * 0.4, 2)
        order = ("box", "full") if i % 2 == 0 else ("full", "box")
        for what in order:
            start = time.perf_counter()
            if what == "box":
                mask_for_box(model, image, (x1, y1, x1 + w, y1 + h))
                box_ms.append((time.perf_counter() - start) * 1000)
            else:
                with torch.no_grad():
                    model([tensor])
                full_ms.append((time.perf_counter() - start) * 1000)
    return {"size": size, "requests": requests, "box_p50_ms": percentile(box_ms, 50),
            "box_p99_ms": percentile(box_ms, 99), "full_p50_ms": percentile(full_ms, 50),
            "full_p99_ms": percentile(full_ms, 99),
            "speedup_p50": statistics.median(full_ms) / statistics.median(box_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", default="96,512")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--through-backend", action="store_true", help="the whole request through API and worker")
    parser.add_argument("--broker", default=None, help="Redis URL for --through-backend (its database is flushed)")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per size for --through-backend")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if args.through_backend:
        if not args.broker:
            parser.error("--through-backend needs --broker redis://HOST:PORT/DB (a database nobody else uses)")
        run_through_backend([int(s) for s in args.size.split(",")], 10 if args.quick else args.requests,
                            args.broker, rng)
        return
    rows = [measure(int(s), 20 if args.quick else 200, rng) for s in args.size.split(",")]
    print(f"{'size':>5} {'box→mask p50':>13} {'p99':>8} {'full inference p50':>19} {'p99':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['size']:5d} {r['box_p50_ms']:11.1f}ms {r['box_p99_ms']:6.1f}ms {r['full_p50_ms']:17.1f}ms "
              f"{r['full_p99_ms']:6.1f}ms {r['speedup_p50']:6.2f}")
    print(json.dumps({"rows": rows, "torch_threads": torch.get_num_threads(),
                      "load_avg_1m": round(__import__("os").getloadavg()[0], 2)}))


# ------------------------------------------------------------------------------------------------
# --through-backend: the interactive request as Label Studio forwards it


def _train_one_epoch(root: Path, size: int) -> Path:
    """A Mask R-CNN run folder segpipe wrote (checkpoint, config, categories) after one epoch."""
    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.runner import train

    coco = make_shapes_coco(root / "shapes", n_images=2, size=(96, 96), seed=0)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    config = from_dict({
        "task": "instance", "data": {"train": source, "val": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": {"name": "maskrcnn_resnet18_fpn", "min_size": size, "max_size": size, "box_detections_per_img": 10},
        "train": {"device": "cpu", "seed": 0, "epochs": 1, "batch_size": 2, "image_size": 96},
        "output_dir": str(root / "artifacts" / "jobs" / f"train-{size}" / "run"),
    })  # fmt: skip
    result = train(config, show_progress=False)
    assert result.best_checkpoint is not None
    return Path(result.best_checkpoint)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _context(box: tuple[float, float, float, float], size: int) -> dict[str, object]:
    x1, y1, x2, y2 = box
    return {"result": [{"id": "p", "type": "rectanglelabels", "from_name": "box_prompt", "to_name": "image",
                        "original_width": size, "original_height": size, "image_rotation": 0,
                        "value": {"x": 100 * x1 / size, "y": 100 * y1 / size, "width": 100 * (x2 - x1) / size,
                                  "height": 100 * (y2 - y1) / size, "rotation": 0, "rectanglelabels": ["circle"]}}]}


def run_through_backend(sizes: list[int], requests: int, broker: str, rng: np.random.Generator) -> None:
    import base64
    import os
    import subprocess
    import tempfile

    import httpx
    import redis
    from PIL import Image

    from segpipe.engine.predict import load_model
    from segpipe.masks.formats.label_studio import labeling_config
    from segpipe.stores import Stores

    redis.Redis.from_url(broker).flushdb()
    repo = BENCH.parent
    rows = []
    with tempfile.TemporaryDirectory(prefix="box-to-mask-bench-") as tmp:
        root = Path(tmp)
        data, artifacts = root / "data", root / "artifacts"
        data.mkdir()
        db_url = f"sqlite:///{root / 'segpipe.db'}"
        stores = Stores.open(db_url, artifacts)
        checkpoints = {}
        for size in sizes:
            checkpoints[size] = _train_one_epoch(root, size)
            relative = checkpoints[size].relative_to(artifacts).as_posix()
            version = stores.versions.register(f"shapes{size}", "instance", "{}", checkpoint=relative)
            stores.versions.promote(f"shapes{size}", version.version)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(data / f"{size}.png")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")},
               "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": broker,
               "SEGPIPE_DATA_ROOTS": str(data), "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
               "SEGPIPE_TOKENS": "ann-token:annotator", "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
        port = _free_port()
        logs = [open(root / name, "wb") for name in ("worker.log", "api.log")]  # noqa: SIM115 - closed below
        worker = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--queues", "interactive"],
                                  env=env, stdout=logs[0], stderr=subprocess.STDOUT, cwd=root)
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "segpipe.api.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                               env=env, stdout=logs[1], stderr=subprocess.STDOUT, cwd=repo)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Basic " + base64.b64encode(b"label-studio:ann-token").decode()}
        try:
            client = httpx.Client(timeout=120)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"{base}/health").status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API did not start:\n{(root / 'api.log').read_text()[-2000:]}")
                time.sleep(0.2)
            for size in sizes:
                loaded = load_model(checkpoints[size], "cpu")
                image = np.asarray(Image.open(data / f"{size}.png").convert("RGB"))
                config = labeling_config("instance", list(zip(loaded.category_map.ids, loaded.category_map.names,
                                                              strict=True)))
                url = f"{base}/ls/shapes{size}@production/predict"

                def ask(box: tuple[float, float, float, float], size: int = size, url: str = url,
                        config: str = config) -> None:
                    reply = client.post(url, headers=auth, json={
                        "tasks": [{"id": 1, "data": {"image": str(data / f"{size}.png")}}], "label_config": config,
                        "params": {"context": _context(box, size)}})
                    if reply.status_code != 200:
                        raise SystemExit(f"{reply.status_code} {reply.text[:500]}\n"
                                         f"{(root / 'worker.log').read_text()[-2000:]}")

                first = (size * 0.2, size * 0.2, size * 0.6, size * 0.6)
                ask(first)  # the worker loads the model into its cache
                ask(first)
                mask_for_box(loaded.model, image, first)
                backend_ms, local_ms = [], []
                for i in range(requests):
                    x1, y1 = rng.uniform(0, size * 0.6, 2)
                    w, h = rng.uniform(size * 0.1, size * 0.4, 2)
                    box = (float(x1), float(y1), float(x1 + w), float(y1 + h))
                    for what in (("backend", "local") if i % 2 == 0 else ("local", "backend")):
                        start = time.perf_counter()
                        if what == "backend":
                            ask(box)
                            backend_ms.append((time.perf_counter() - start) * 1000)
                        else:
                            mask_for_box(loaded.model, image, box)
                            local_ms.append((time.perf_counter() - start) * 1000)
                rows.append({"size": size, "requests": requests, "backend_p50_ms": percentile(backend_ms, 50),
                             "backend_p99_ms": percentile(backend_ms, 99), "in_process_p50_ms": percentile(local_ms, 50),
                             "in_process_p99_ms": percentile(local_ms, 99),
                             "overhead_p50_ms": statistics.median(backend_ms) - statistics.median(local_ms)})
        finally:
            for proc in (api, worker):
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for log in logs:
                log.close()
            stores.close()
    print(f"{'size':>5} {'through backend p50':>20} {'p99':>8} {'in process p50':>15} {'p99':>8} {'overhead p50':>13}")
    for r in rows:
        print(f"{r['size']:5d} {r['backend_p50_ms']:18.1f}ms {r['backend_p99_ms']:6.1f}ms {r['in_process_p50_ms']:13.1f}ms "
              f"{r['in_process_p99_ms']:6.1f}ms {r['overhead_p50_ms']:11.1f}ms")
    print(json.dumps({"mode": "through-backend", "rows": rows, "torch_threads": torch.get_num_threads(),
                      "worker_threads": 1, "cores": __import__("os").cpu_count(),
                      "load_avg_1m": round(__import__("os").getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
