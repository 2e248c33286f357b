"""The retraining worked example of docs/retraining.md runs as written: docs/examples/retraining.sh with
a real `segpipe worker`, the API and the embedded SQLite store and broker, and each step ends as the
page says (v1 promoted, a signal with nothing new queues nothing, redrawn data → v2 promoted, wiped
masks → v3 rejected, a rollback puts v1 back)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from segpipe.retrain.promotion import cli_actor
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_the_worked_example_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(SEGPIPE_EXAMPLE_PORT=str(free_port()), OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(REPO / "docs/examples/retraining.sh"), str(tmp_path / "work")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    ticks = re.findall(r"^smoke_binary: (.*)$", out, re.MULTILINE)
    assert "first check: no production version yet" in ticks[0]
    assert ticks[1] == "unchanged: version 1 (production) was trained on this data"
    assert "dataset signalled" in ticks[2] and "differs from production version 1's" in ticks[2]
    assert "dataset signalled" in ticks[3] and "differs from production version 2's" in ticks[3]
    assert re.search(r"v2 +│ +v1 +│ +promoted", out), out[-4000:]
    assert re.search(r"v3 +│ +v2 +│ +rejected", out), out[-4000:]
    assert f"rolled back by {cli_actor()} from version 2 to version 1" in out  # the OS user, from the CLI
    assert '"model": "smoke_binary@2"' in out
