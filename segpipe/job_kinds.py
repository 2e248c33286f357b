"""Job kinds: the one front door. A kind is one `JobKind` entry — its spec model, its runner, its
default queue, its submit-time check and whether people may submit it — that `jobs.specs` (parsing),
`service` (submit, queue), `jobs.preflight` (submit-time checks), `jobs.execute` (running), the store
(allowed kinds), the API schema and the CLI all read.

Adding a kind = one `register(...)` below plus its spec class, runner and check, nothing else.

Runners are named as ``(module, function)`` and imported when a job of that kind first runs, so
reading the registry (the API, the CLI) does not import torch. These names are code, never config.
The checks below import `segpipe.jobs.preflight`'s helpers only when they run: reading the registry
need not import the stores, and `preflight` (which reads this registry) imports it at its top.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segpipe.registry import Registry

if TYPE_CHECKING:
    from segpipe.config import JobConfig, Section
    from segpipe.jobs.specs import EvaluateSpec, PredictSpec
    from segpipe.stores import Stores

# A submit-time check: ``check(stored_spec, stores)`` raises ConfigError naming the key (see `preflight`).
Preflight = Callable[[Any, "Stores"], None]

# interactive: short predict jobs for the Label Studio ML backend, answered while Label Studio waits
QUEUES: tuple[str, ...] = ("gpu", "cpu", "interactive")


@dataclass(frozen=True)
class JobKind:
    """One kind of queued job.

    ``spec`` is the pydantic model of its document (None: a full `JobConfig`, as for ``train``);
    ``runner`` is ``(module, function)`` of ``fn(run: JobRun, spec) -> artifacts``; ``submittable``
    says whether ``POST /jobs`` / ``segpipe submit`` accept it (others are queued by segpipe itself);
    ``preflight`` checks a submitted spec (as stored) inside the job's path confinement, so a job
    that could not run is refused at submit (None: nothing beyond parsing).
    """

    name: str
    spec: type[Section] | None
    runner: tuple[str, str]
    queue: str = "gpu"
    submittable: bool = True
    description: str = ""
    preflight: Preflight | None = None

    def run(self, run: Any, spec: Any) -> dict[str, str]:
        fn: Callable[[Any, Any], dict[str, str]] = getattr(importlib.import_module(self.runner[0]), self.runner[1])
        return fn(run, spec)


KINDS: Registry[JobKind] = Registry("job kind")


def register(kind: JobKind) -> JobKind:
    if kind.queue not in QUEUES:
        raise ValueError(f"job kind {kind.name}: unknown queue {kind.queue!r}; known: {', '.join(QUEUES)}")
    KINDS.add(kind.name, kind, description=kind.description, tags=("submittable",) if kind.submittable else ())
    return kind


def get(name: str) -> JobKind:
    """The kind called `name`; `ConfigError` listing the known kinds otherwise."""
    if name not in KINDS:
        from segpipe.errors import ConfigError

        raise ConfigError(f"unknown job kind {name!r}; known: {', '.join(names())}")
    return KINDS.get(name)


def names() -> tuple[str, ...]:
    """Every kind, in registration order (the order the API documents them)."""
    return tuple(e.name for e in KINDS._entries.values())  # noqa: SLF001 - insertion order is the documented order


def submittable() -> tuple[str, ...]:
    """The kinds people may submit (``POST /jobs``, ``segpipe submit``)."""
    return tuple(n for n in names() if get(n).submittable)


def _preflight_train(config: JobConfig, _stores: Stores) -> None:
    from segpipe.jobs.preflight import check_train_config

    check_train_config(config)


def _preflight_evaluate(spec: EvaluateSpec, stores: Stores) -> None:
    from segpipe.jobs.preflight import check_data, check_model_ref

    check_model_ref(spec.model, stores)
    check_data(spec.data, "data")


def _preflight_predict(spec: PredictSpec, stores: Stores) -> None:
    from segpipe.jobs.preflight import check_model_ref, check_predict_images

    check_model_ref(spec.model, stores)
    check_predict_images(spec)


def _register_builtin() -> None:
    from segpipe.jobs.specs import BoxMaskSpec, EvaluateSpec, NodeSpec, PredictSpec, RetrainSpec, ShardSpec

    register(JobKind("train", None, ("segpipe.jobs.training", "run_train"), preflight=_preflight_train,
                     description="train a model from a job config; a named config also registers a version"))
    register(JobKind("evaluate", EvaluateSpec, ("segpipe.jobs.evaluation", "run_evaluate"), preflight=_preflight_evaluate,
                     description="evaluate a model on a dataset split"))
    register(JobKind("predict", PredictSpec, ("segpipe.jobs.prediction", "run_predict"), preflight=_preflight_predict,
                     description="predict a folder of images; large jobs are split into predict-shard jobs"))
    register(JobKind("retrain", RetrainSpec, ("segpipe.jobs.training", "run_retrain"), submittable=False,
                     description="scheduled retraining: train, evaluate against production, gate the promotion"))
    register(JobKind("predict-shard", ShardSpec, ("segpipe.jobs.sharding.runner", "run_shard"), submittable=False,
                     description="one slice of a sharded predict job (queued by its parent)"))
    register(JobKind("train-node", NodeSpec, ("segpipe.jobs.distributed", "run_node"), submittable=False,
                     description="one host of a multi-node training (queued by the training's first node)"))
    register(JobKind("box-mask", BoxMaskSpec, ("segpipe.jobs.box_mask", "run_box_mask"), queue="interactive",
                     submittable=False, description="the mask of the object inside a drawn box (queued by the "
                                                    "Label Studio backend for its smart rectangle tool)"))


_register_builtin()
