"""Running one node of a training under PyTorch's elastic agent (``python -m torch.distributed.run``).

Every node of a job starts the same command: ``gpus_per_node`` ranks, ``nodes`` agents meeting at a
c10d rendezvous that the first node hosts (``is_host=1``) at the endpoint segpipe's store advertised.
The agent restarts the ranks (up to ``max_restarts`` times, from the last checkpoint) when one dies
or a node leaves; `supervise` runs the agent in its own process group, tied to the worker (a worker
killed takes its ranks with it) and kills the whole group when the job must stop at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RANK_MODULE = "segpipe.jobs.elastic.rank"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class NodeLaunch:
    """One node's share of a distributed training."""

    nodes: int
    gpus_per_node: int
    endpoint: str  # host:port of the c10d rendezvous
    run_id: str  # the rendezvous id: the job and its attempt
    is_host: bool  # this node hosts the rendezvous store (the job's first node)
    join_timeout: float
    max_restarts: int
    local_addr: str  # the address the other nodes reach this one at (rank 0's process group listens here)

    def command(self, context: Path) -> list[str]:
        """The torchrun command line; each rank runs ``python -m segpipe.jobs.elastic.rank CONTEXT``."""
        conf = f"join_timeout={self.join_timeout:g},is_host={int(self.is_host)},last_call_timeout=1"
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(self.nodes), "--nproc-per-node", str(self.gpus_per_node),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", self.endpoint, "--rdzv-id", self.run_id,
            "--rdzv-conf", conf, "--max-restarts", str(self.max_restarts), "--monitor-interval", "1",
            "--local-addr", self.local_addr,
            "-m", RANK_MODULE, str(context),
        ]  # fmt: skip


def advertised_host(configured: str | None) -> str:
    """``SEGPIPE_ADVERTISE_HOST``, else this host's fully qualified name."""
    return configured or socket.getfqdn()


def free_port(host: str = "") -> int:
    """A TCP port nothing listens on now (the rendezvous binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed worker leaves no stray ranks)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the ranks end when their collectives time out
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Outcome:
    returncode: int
    killed: str | None  # why the group was killed, when it was
    log_tail: str


def supervise(command: list[str], env: dict[str, str], log_path: Path, *,
              kill_reason: Callable[[], str | None], poll: float = 0.5, grace: float = 10.0) -> Outcome:
    """Run ``command`` (the agent) in a process group of its own, its output in ``log_path``; poll
    ``kill_reason()`` and, when it names one, SIGTERM the whole group, then SIGKILL after ``grace``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509 - prctl only
    killed: str | None = None
    try:
        while proc.poll() is None:
            time.sleep(poll)
            if killed is None:
                killed = kill_reason()
                if killed is not None:
                    _signal_group(proc, signal.SIGTERM)
                    try:
                        proc.wait(timeout=grace)
                    except subprocess.TimeoutExpired:
                        _signal_group(proc, signal.SIGKILL)
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        raise
    finally:
        if proc.poll() is None:
            proc.wait()
        _signal_group(proc, signal.SIGKILL)  # ranks the agent left behind
    return Outcome(proc.returncode, killed, _tail(log_path))


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def failure_reason(outcome: Outcome, launch: NodeLaunch) -> str:
    """One line for a failed job: a rendezvous that timed out, the restarts spent, or the agent's last error."""
    text = outcome.log_tail
    if "RendezvousTimeoutError" in text or "RendezvousClosedError" in text:
        return (f"the {launch.nodes} nodes did not all join the rendezvous at {launch.endpoint} within "
                f"{launch.join_timeout:g} s (resources.join_timeout)")
    first_error = next((line.strip() for line in reversed(text.splitlines())
                        if "Error" in line or "error" in line), "")
    return (f"the ranks failed after {launch.max_restarts} restart(s) (resources.max_restarts); agent exit code "
            f"{outcome.returncode}" + (f": {first_error[:400]}" if first_error else ""))
