"""Queued trainings beyond one process: the job's first node (the worker that claimed the ``train`` job)
and its other nodes (``train-node`` jobs), each running PyTorch's elastic agent (`segpipe.jobs.elastic.launch`).

Gang scheduling: with ``resources.nodes = M`` the first node picks the rendezvous endpoint (its
advertised host and a port), queues M-1 ``train-node`` rows that carry it (the store is where the
endpoint is advertised: any worker that claims a row knows where to meet), and waits until every row
is claimed. Only then does it start its agent, which hosts the c10d store; the others join it. If a
row is not claimed within ``resources.join_timeout`` the job fails with that reason and the rows
already claimed are released (cancelled: their workers kill their agents).

Faults: a rank or a node that dies makes the agents restart every rank from the last checkpoint (rank
0 broadcasts it), up to ``resources.max_restarts`` times; a dead node's row loses its lease, the
reconciler re-queues it, and the worker that takes it joins the same rendezvous. When the agents give
up the job fails with the reason. The first node's worker holds the job's lease as for any job; if
it dies, the job is re-queued and its next attempt starts a new rendezvous with new node rows (the
rows of the old attempt stop: their leader changed). Cancel: rank 0 sees the flag, every rank stops
after the checkpoint; what has not stopped after `CANCEL_GRACE` seconds is killed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segpipe.config import JobConfig, dump
from segpipe.errors import ConfigError, SegpipeError
from segpipe.jobs.elastic.launch import (
    NodeLaunch,
    advertised_host,
    failure_reason,
    free_port,
    supervise,
)
from segpipe.jobs.elastic.rank import RESULT, RankContext
from segpipe.jobs.model_refs import resolve_weights_ref
from segpipe.jobs.run import JobRun, staged
from segpipe.jobs.specs import NodeSpec, dump_spec
from segpipe.stores import Stores
from segpipe.vocabulary import TERMINAL_STATES, RunFiles

log = logging.getLogger("segpipe.elastic")
NODE_KIND = "train-node"
CANCEL_GRACE = 30.0  # seconds ranks have to stop by themselves after a cancel before they are killed
NODE_END_GRACE = 60.0  # seconds the leader waits, after its ranks are done, for the other nodes' agents to exit


def node_job_id(job_id: str, attempt: int, node: int) -> str:
    return f"{job_id}-a{attempt}n{node}"


def run_distributed_train(run: JobRun, spec: JobConfig) -> dict[str, str]:
    """The ``train`` kind when ``resources`` asks for more than one rank: this worker is node 0."""
    from segpipe.jobs.training import finish_train  # the train runner imports this module

    res = spec.resources
    submitted = spec.model_copy(deep=True)  # what the other nodes stage and resolve for themselves
    spec = staged(run, spec)
    run_dir = run.folder / "run"
    spec.output_dir = run_dir
    resolve_weights_ref(spec, run.stores)
    check_devices(spec)
    if run.stores.artifacts.remote is not None:
        from segpipe.jobs.run_sync import restore_run

        restore_run(run.stores.artifacts, run.job_id, run_dir)
    attempt = run.stores.jobs.get(run.job_id).attempts
    host = advertised_host(run.settings.advertise_host)
    endpoint = f"{host}:{run.settings.rendezvous_port or free_port()}"
    launch = NodeLaunch(res.nodes, res.gpus_per_node, endpoint, f"{run.job_id}-a{attempt}", True,
                        res.join_timeout, res.max_restarts, host)
    release_nodes(run.stores, run.job_id, keep=())  # an earlier attempt's nodes
    run.progress({"phase": "rendezvous", "rendezvous": endpoint, "nodes": res.nodes,
                  "gpus_per_node": res.gpus_per_node, "world_size": res.world_size}, force=True)
    nodes = [node_job_id(run.job_id, attempt, n) for n in range(1, res.nodes)]
    if nodes:
        queue_nodes(run, submitted, launch, nodes)
        wait_for_nodes(run, nodes, res.join_timeout)
    context = RankContext(run.job_id, run.owner, dump(spec), str(run_dir)).save(run.folder / "rank-context.json")
    outcome = supervise(launch.command(context), _rank_env(), run.folder / "elastic.log",
                        kill_reason=_leader_stop(run))
    if run.lease_lost.is_set():
        return {}  # the pipeline reports the lost lease; the nodes see their leader change
    if outcome.returncode != 0:
        release_nodes(run.stores, run.job_id, keep=())
        if run.cancelled:
            return {}
        log.error("job %s: elastic agent failed:\n%s", run.job_id, outcome.log_tail)
        raise SegpipeError(failure_reason(outcome, launch))
    if run.stores.artifacts.remote is not None:
        from segpipe.jobs.run_sync import pull_run

        pull_run(run.stores.artifacts, run.job_id, run_dir)  # rank 0 may have run on another host
    result = read_result(run_dir)
    await_nodes_end(run, nodes, NODE_END_GRACE)
    if result.state.stop_reason == "cancelled":
        run.cancelled = True
    artifacts = finish_train(run, spec, result, run_dir)
    artifacts["elastic.log"] = run.register("elastic.log", run.folder / "elastic.log")  # the agent's and ranks' log
    return artifacts


def run_node(run: JobRun, spec: NodeSpec) -> dict[str, str]:
    """The ``train-node`` kind: one more host of a multi-node training, joining its rendezvous."""

    config = staged(run, spec.config)
    run_dir = run.stores.artifacts.job_dir(spec.parent, create=True) / "run"
    config.output_dir = run_dir
    resolve_weights_ref(config, run.stores)
    check_devices(config)
    res = config.resources
    host = advertised_host(run.settings.advertise_host)
    launch = NodeLaunch(res.nodes, res.gpus_per_node, spec.endpoint, spec.run_id, False,
                        res.join_timeout, res.max_restarts, host)
    context = RankContext(spec.parent, spec.leader_owner, dump(config), str(run_dir))
    context.save(run.folder / "rank-context.json")
    run.progress({"phase": "train", "node": spec.node, "rendezvous": spec.endpoint}, force=True)
    outcome = supervise(launch.command(run.folder / "rank-context.json"), _rank_env(), run.folder / "elastic.log",
                        kill_reason=_node_stop(run, spec))
    if outcome.returncode != 0 and outcome.killed is None and not run.lease_lost.is_set():
        log.error("job %s: elastic agent failed:\n%s", run.job_id, outcome.log_tail)
        raise SegpipeError(f"node {spec.node} of job {spec.parent}: {failure_reason(outcome, launch)}")
    if outcome.killed is not None:
        log.info("job %s: node stopped: %s", run.job_id, outcome.killed)
        run.cancelled = True
    run.should_stop()  # a node of a cancelled job ends cancelled too
    run.progress({"phase": "done", "node": spec.node}, force=True)
    return {}


def check_devices(config: JobConfig) -> None:
    """On CUDA every rank of a node takes a GPU of its own (``cuda:<local rank>``)."""
    import torch

    device = config.train.device
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda and torch.cuda.device_count() < config.resources.gpus_per_node:
        raise ConfigError(f"resources.gpus_per_node is {config.resources.gpus_per_node} but this worker sees "
                          f"{torch.cuda.device_count()} GPU(s) (CUDA_VISIBLE_DEVICES); start it with more")


def queue_nodes(run: JobRun, config: JobConfig, launch: NodeLaunch, ids: list[str]) -> None:
    """The node rows of this attempt (the claims the other workers take), each published once."""
    if run.publish is None:
        raise SegpipeError(f"job {run.job_id}: resources.nodes is {launch.nodes}, but this worker cannot queue "
                           "the other nodes (no broker)")
    stores = run.stores
    parent = stores.jobs.get(run.job_id)
    rows = [(job_id, dump_spec(NodeSpec(parent=run.job_id, node=n, endpoint=launch.endpoint, run_id=launch.run_id,
                                        leader_owner=run.owner, config=config)))
            for n, job_id in enumerate(ids, start=1)]
    stores.shards.create_children(parent, NODE_KIND, rows)
    for job_id in ids:
        run.publish(job_id, parent.queue)


def wait_for_nodes(run: JobRun, ids: list[str], timeout: float) -> None:
    """Gang scheduling: every node row claimed by a worker within ``timeout``, or none keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        states = {job_id: run.stores.jobs.get(job_id).state for job_id in ids}
        waiting = [job_id for job_id, state in states.items() if state == "queued"]
        ended = [job_id for job_id, state in states.items() if state in TERMINAL_STATES]
        if not waiting and not ended:
            return
        if ended or run.should_stop() or time.monotonic() > deadline:
            release_nodes(run.stores, run.job_id, keep=())
            if run.should_stop():
                raise SegpipeError(f"job {run.job_id}: stopped while waiting for its nodes")
            missing = ", ".join(_node_number(j) for j in waiting + ended)
            raise SegpipeError(
                f"node(s) {missing} of {len(ids) + 1} not claimed by any worker within {timeout:g} s "
                "(resources.join_timeout); the nodes that were claimed are released")
        time.sleep(0.5)


def await_nodes_end(run: JobRun, ids: list[str], grace: float) -> None:
    """The job ends after its nodes: a finished job leaves no host still holding a node row.

    The other agents exit a moment after rank 0 (the rendezvous closes); one that has not within
    ``grace`` seconds is asked to stop, so a stuck host never keeps a succeeded job's node open.
    """
    deadline = time.monotonic() + grace
    while any(run.stores.jobs.get(job_id).state not in TERMINAL_STATES for job_id in ids):
        if time.monotonic() > deadline:
            log.warning("job %s: node(s) still running %g s after the ranks ended; stopping them", run.job_id, grace)
            release_nodes(run.stores, run.job_id, keep=())
            return
        time.sleep(0.5)


def release_nodes(stores: Stores, job_id: str, keep: tuple[str, ...]) -> None:
    """Cancel the job's node rows that are still open (queued ones at once; running ones stop their agent)."""
    for child in stores.shards.children(job_id):
        if child.kind == NODE_KIND and child.id not in keep and child.state not in TERMINAL_STATES:
            stores.jobs.request_cancel(child.id)


def read_result(run_dir: Path) -> Any:
    """The `TrainResult` rank 0 left in ``result.json``."""
    from segpipe.data.categories import CategoryMap
    from segpipe.engine.checkpoint import BEST, LAST
    from segpipe.engine.runner import TrainResult
    from segpipe.engine.train import TrainState

    path = run_dir / RESULT
    if not path.is_file():
        raise SegpipeError(f"the ranks ended without writing {path.name} (rank 0 did not finish)")
    raw = json.loads(path.read_text())
    state = TrainState.from_dict(raw["state"])
    state.stop_reason = raw["state"].get("stop_reason")
    best = run_dir / BEST
    return TrainResult(run_dir, state, raw.get("metrics") or {}, CategoryMap.load(run_dir / RunFiles.CATEGORIES),
                       best if best.is_file() else None, run_dir / LAST, raw.get("tracking") or {})


def _leader_stop(run: JobRun) -> Callable[[], str | None]:
    cancelled_at: list[float] = []

    def reason() -> str | None:
        if run.lease_lost.is_set():
            return "lease lost"
        if run.should_stop():
            cancelled_at.append(time.monotonic())
            if time.monotonic() - cancelled_at[0] > CANCEL_GRACE:
                return f"cancelled; the ranks had not stopped {CANCEL_GRACE:g} s later"
        return None

    return reason


def _node_stop(run: JobRun, spec: NodeSpec) -> Callable[[], str | None]:
    cancelled_at: list[float] = []

    def reason() -> str | None:
        if run.lease_lost.is_set():
            return "lease lost"
        parent = run.stores.jobs.get(spec.parent)
        if parent.state in TERMINAL_STATES:
            return f"job {spec.parent} ended ({parent.state})"
        if parent.lease_owner != spec.leader_owner:
            return f"job {spec.parent} has a new first node ({parent.lease_owner})"
        if parent.cancel_requested:
            cancelled_at.append(time.monotonic())
            if time.monotonic() - cancelled_at[0] > CANCEL_GRACE:
                return "cancelled; the ranks had not stopped in time"
            return None
        if run.stores.jobs.is_cancel_requested(run.job_id):
            return "released by the first node"
        return None

    return reason


def _node_number(job_id: str) -> str:
    return job_id.rpartition("n")[2]


def _rank_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default with several ranks, said aloud
    # Every rendezvous round publishes rank 0's address afresh. With the agents' shared TCP store (torch's
    # default) only a node's first round does, so a node that replaces a dead one waits forever for it.
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    return env
