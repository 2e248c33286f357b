"""`segpipe worker --gpus`: one child per GPU with its own CUDA_VISIBLE_DEVICES, restarted if it dies.

No GPU is needed: the ids are only handed to the children, which is what is checked (the variable in
each child's real environment, read from /proc)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segpipe.errors import ConfigError
from segpipe.supervisor import Supervisor, parse_gpus

CHILD = """
import os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
(out / (os.environ["CUDA_VISIBLE_DEVICES"] + "-" + str(os.getpid()))).write_text(os.environ["SEGPIPE_WORKER_GPU"])
time.sleep(300)
"""


def test_gpu_lists_are_checked() -> None:
    assert parse_gpus("0, 1,2") == ["0", "1", "2"]
    assert parse_gpus("GPU-1a2b,3") == ["GPU-1a2b", "3"]
    for bad, message in (("", "comma-separated"), ("0,x", "x is not a GPU id"), ("1,1", "repeat")):
        with pytest.raises(ConfigError, match=message):
            parse_gpus(bad)


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_each_child_sees_only_its_gpu_and_is_restarted(tmp_path: Path) -> None:
    sup = Supervisor(["0", "3"], lambda gpu: [sys.executable, "-c", CHILD, str(tmp_path)], grace=10)
    sup.start()
    try:
        started = _wait_for(lambda: sorted(p.name for p in tmp_path.iterdir()) if len(list(tmp_path.iterdir())) == 2 else None)
        assert [name.split("-")[0] for name in started] == ["0", "3"]
        victim = sup.children[1].proc
        assert victim is not None
        victim.kill()
        victim.wait()
        # the supervisor restarts GPU 3's worker (a quick failure: after a back-off of 2 s)
        _wait_for(lambda: (sup.poll(), len([p for p in tmp_path.iterdir() if p.name.startswith("3-")]) == 2)[1])
        assert sup.children[1].proc is not None and sup.children[1].proc.pid != victim.pid
    finally:
        sup.stop()
    assert all(c.proc is not None and c.proc.poll() is not None for c in sup.children)


def test_each_child_gets_its_own_metrics_port(tmp_path: Path) -> None:
    """One Prometheus target per worker process: SEGPIPE_WORKER_METRICS_PORT + the child's index."""
    env = {**os.environ, "SEGPIPE_WORKER_METRICS_PORT": "9464"}
    sup = Supervisor(["2", "5", "7"], lambda gpu: [sys.executable, "-c", "import time; time.sleep(300)"],
                     base_env=env, grace=10)
    sup.start()
    try:
        ports = {c.gpu: _environ(c.proc.pid)["SEGPIPE_WORKER_METRICS_PORT"] for c in sup.children if c.proc}
    finally:
        sup.stop()
    assert ports == {"2": "9464", "5": "9465", "7": "9466"}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads child environments from /proc")
def test_segpipe_worker_gpus_starts_real_workers_per_gpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGPIPE_", "CUDA_VISIBLE"))}
    env.update(SEGPIPE_HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               OMP_NUM_THREADS="1")
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "segpipe", "worker", "--gpus", "2,5", "--reconcile-every", "0"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        pids = _wait_for(lambda: dict(re.findall(r"GPU (\d+): worker started \(pid (\d+)\)", log.read_text()))
                         if log.read_text().count(" ready.") >= 2 else None, timeout=180)
        assert sorted(pids) == ["2", "5"]
        for gpu, pid in pids.items():
            assert _environ(int(pid))["CUDA_VISIBLE_DEVICES"] == gpu
        assert "segpipe-gpu2@" in log.read_text() and "segpipe-gpu5@" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    assert proc.returncode == 0
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
