"""Plain progress lines where no terminal is attached (logs, CI, ``docker logs``): what they say and
how often. A real short training through `segpipe.engine.runner.train` writes to a stream that
records when each line arrived."""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from segpipe.cli.follow import follow
from segpipe.data.synthetic import make_class_folders
from segpipe.engine.hooks import Hook
from segpipe.engine.runner import train
from segpipe.stores.db import Store
from segpipe.stores.jobs import JobStore
from tests.engine.runs import job_config, same_split

INTERVAL = 0.4
STEP_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d train epoch (\d+)/3 step (\d+)/(\d+) loss (\d+\.\d+) lr \S+ "
    r"\| (\d+\.\d) img/s \| ETA (\d+s|\d+m\d\ds)$"
)
EPOCH_LINE = re.compile(r"^\S+ \S+ train epoch (\d)/3 done: loss \d+\.\d+ \| accuracy \d\.\d+ .*\| ETA \S+$")


class TimedStream:
    """A non-terminal text stream that remembers when each line was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self.lines.append((time.monotonic(), line))
        return len(text)

    def flush(self) -> None: ...

    def isatty(self) -> bool:
        return False


class SteadySteps(Hook):
    """Makes every step take a known minimum time, so the cadence is measurable on a busy CPU."""

    def after_step(self, ctx) -> None:
        time.sleep(0.05)


def _eta_seconds(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+)m)?(\d+)s", text)
    assert m, text
    return int(m.group(1) or 0) * 60 + int(m.group(2))


def test_training_prints_plain_lines_at_a_steady_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_class_folders(tmp_path / "data", per_class=8, size=(32, 32))
    config = job_config("classification", same_split({"root": str(data)}),
                        {"name": "cnn_small", "channels": [8], "hidden": 16}, tmp_path / "run",
                        epochs=3, batch_size=2, image_size=32)
    stream = TimedStream()
    monkeypatch.setenv("SEGPIPE_PROGRESS_INTERVAL", str(INTERVAL))
    monkeypatch.setattr(sys, "stdout", stream)
    train(config, show_progress=True, extra_hooks=(SteadySteps(),))
    monkeypatch.undo()

    texts = [line for _, line in stream.lines]
    assert re.search(r"train 3 epochs of 12 steps, batch 2, from the start$", texts[0]), texts[0]
    assert re.search(r"train finished after 3 epochs, 36 steps$", texts[-1]), texts[-1]
    steps = [(t, STEP_LINE.match(line)) for t, line in stream.lines if " step " in line]
    assert steps and all(m for _, m in steps), [line for line in texts if " step " in line]
    # 36 steps of ≥ 50 ms: at least ~1.8 s of training, so at least 3 lines at 0.4 s
    assert len(steps) >= 3
    epochs = [line for line in texts if " done: " in line]
    assert [EPOCH_LINE.match(line).group(1) for line in epochs] == ["1", "2", "3"], epochs
    for _, m in steps:
        epoch, step, per_epoch, loss, rate, _eta = m.groups()
        assert 1 <= int(step) <= int(per_epoch) == 12 and 1 <= int(epoch) <= 3
        assert float(loss) >= 0 and float(rate) > 0
    etas = [_eta_seconds(m.group(6)) for _, m in steps]
    assert etas[-1] <= etas[0]  # the time left shrinks as training goes on
    # cadence: never two step lines closer than the interval; and steady: within an epoch, no gap
    # longer than the interval plus a few steps
    times = [t for t, _ in steps]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= INTERVAL - 0.01, gaps
    same_epoch = [b - a for (a, ma), (b, mb) in itertools.pairwise(steps) if ma.group(1) == mb.group(1)]
    assert same_epoch and sorted(same_epoch)[len(same_epoch) // 2] < INTERVAL + 0.5, same_epoch


def test_follow_prints_plain_lines_for_a_running_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``segpipe job --follow`` off a terminal: a line per state/phase change and at the interval,
    from the progress a worker writes to the (real, SQLite) store."""
    monkeypatch.setenv("SEGPIPE_PROGRESS_INTERVAL", "0.3")
    store = Store.from_url(f"sqlite:///{tmp_path / 'jobs.db'}")
    jobs = JobStore(store)
    job = jobs.create("train", "task: classification\n", "cpu")

    def worker() -> None:
        time.sleep(0.3)
        jobs.claim(job.id, "w1", 60)
        for step in range(1, 9):
            jobs.update_progress(job.id, "w1", {"phase": "train", "epoch": 1, "epochs": 2, "step": step, "steps": 8,
                                                "loss": 1.0 / step, "images_per_s": 12.5, "eta_s": 80 - step})
            time.sleep(0.15)
        jobs.update_progress(job.id, "w1", {"phase": "done", "epoch": 2, "epochs": 2, "metrics": {"accuracy": 0.9}})
        jobs.finish(job.id, "w1", "succeeded")

    thread = threading.Thread(target=worker)
    thread.start()
    stream = TimedStream()
    state = follow(SimpleNamespace(jobs=jobs), job.id, console=None, poll_s=0.05, stream=stream)  # type: ignore[arg-type]
    thread.join()
    store.engine.dispose()
    texts = [line for _, line in stream.lines]
    assert state == "succeeded"
    assert any(re.search(rf"job {job.id} queued$", t) for t in texts), texts
    running = [t for t in texts if "running train epoch 1/2 step" in t]
    assert running and all(re.search(r"loss \d\.\d{4} \| 12\.5 img/s \| ETA 1m1\ds$", t) for t in running), running
    assert 2 <= len(running) <= 6  # ~1.2 s of training at 0.3 s: a line each interval, not per poll
    assert re.search(rf"job {job.id} succeeded done epoch 2/2 \| accuracy 0\.900", texts[-2]), texts
    assert texts[-1].endswith(f"job {job.id} succeeded")
