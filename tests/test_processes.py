"""stop_process: a polite SIGTERM first, SIGKILL only for a child that ignores it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from segpipe.processes import stop_process


def test_a_child_that_exits_on_sigterm_is_not_killed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(proc, grace=10) == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    start = time.monotonic()
    assert stop_process(proc, grace=0.5) == -signal.SIGKILL
    assert time.monotonic() - start < 10


def test_a_child_that_already_ended_keeps_its_exit_code() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert stop_process(proc) == 3
