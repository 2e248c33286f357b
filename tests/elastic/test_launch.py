"""The pieces of a distributed training that need no cluster: resources in the config, the agent's
command line, the failure reasons, the learning-rate rule, the agent supervised and killed as a group."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from segpipe.config import from_dict
from segpipe.engine.distributed import scaled_lr
from segpipe.errors import ConfigError
from segpipe.jobs.elastic.launch import NodeLaunch, Outcome, failure_reason, supervise

BASE = {"task": "classification", "model": {"name": "cnn_small"}}
LAUNCH = NodeLaunch(nodes=2, gpus_per_node=4, endpoint="10.0.0.5:29400", run_id="job-a1", is_host=True,
                    join_timeout=120, max_restarts=3, local_addr="10.0.0.5")


def test_resources_default_to_one_process_and_are_validated() -> None:
    config = from_dict(BASE)
    assert (config.resources.gpus_per_node, config.resources.nodes, config.resources.world_size) == (1, 1, 1)
    assert from_dict({**BASE, "resources": {"gpus_per_node": 4, "nodes": 2}}).resources.world_size == 8
    with pytest.raises(ConfigError, match=r"resources\.nodes"):
        from_dict({**BASE, "resources": {"nodes": 0}})
    with pytest.raises(ConfigError, match=r"resources: unknown key|resources\.gpus: unknown key"):
        from_dict({**BASE, "resources": {"gpus": 2}})


def test_the_agent_command_names_the_rendezvous_and_the_limits() -> None:
    command = LAUNCH.command(Path("/jobs/x/rank-context.json"))
    text = " ".join(command)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    for part in ("--nnodes 2", "--nproc-per-node 4", "--rdzv-backend c10d", "--rdzv-endpoint 10.0.0.5:29400",
                 "--rdzv-id job-a1", "--max-restarts 3", "--local-addr 10.0.0.5",
                 "-m segpipe.jobs.elastic.rank /jobs/x/rank-context.json"):
        assert part in text
    assert "join_timeout=120,is_host=1" in text


def test_failure_reasons_say_what_happened() -> None:
    timeout = failure_reason(Outcome(1, None, "...torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"), LAUNCH)
    assert "did not all join the rendezvous at 10.0.0.5:29400 within 120 s (resources.join_timeout)" in timeout
    crashed = failure_reason(Outcome(1, None, "RuntimeError: CUDA out of memory\nother line"), LAUNCH)
    assert "after 3 restart(s) (resources.max_restarts)" in crashed and "CUDA out of memory" in crashed


def test_lr_scaling_rules() -> None:
    assert scaled_lr(0.1, "none", 8) == 0.1
    assert scaled_lr(0.1, "linear", 8) == pytest.approx(0.8)
    assert scaled_lr(0.1, "sqrt", 4) == pytest.approx(0.2)
    assert scaled_lr(0.1, "linear", 1) == 0.1


def test_supervise_kills_the_whole_group_when_told(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
              f"open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(600)")
    outcome = supervise([sys.executable, "-c", script], {}, tmp_path / "agent.log",
                        kill_reason=lambda: "stop now" if child.is_file() else None, poll=0.2, grace=5)
    assert outcome.killed == "stop now" and outcome.returncode != 0
    pid = int(child.read_text())

    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the agent's child survived"
        time.sleep(0.1)
