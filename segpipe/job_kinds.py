"""Job kinds: the vocabulary, and the one place the built-in kinds are registered.

A kind is one `JobKind` entry: its name, default queue, whether people may submit it, what it produces
(its capabilities: a model, predictions in the store, images it takes from the Label Studio inbox, a
part of another job), and where its code lives — its spec model, its runner and its submit-time check,
each named as ``(module, attribute)``. The store (allowed kinds), the Celery app (queues), `service`
(submit, queue), the API schema and the CLI read this module; the job layer (`segpipe.jobs.kinds`)
imports the named code when a job of that kind is parsed, checked or run.

This module is pure: it imports no segpipe module beyond the registry and the errors, so the store and
the API can read the vocabulary without the job layer, the engine or torch. Code is named, never
imported here; these names are code, never config.

Adding a kind = one `register(...)` below plus one module holding its spec, runner and check. Code asks
a kind what it can do (`has(kind, MODEL)`), never which kind it is (``kind == "train"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segpipe.errors import ConfigError
from segpipe.registry import Registry

# interactive: short predict jobs for the Label Studio ML backend, answered while Label Studio waits
QUEUES: tuple[str, ...] = ("gpu", "cpu", "interactive")

# ---- capabilities: what a kind produces or needs
#: its run folder holds a trained model (checkpoints, categories.json, config.yaml): ``job:<id>`` names it
MODEL = "model"
#: its predictions are in the prediction store under its own id: exports, review pages, what to label next
PREDICTIONS = "predictions"
#: its input images may lie in the Label Studio inbox, which it empties when it ends
INBOX = "inbox"
#: a piece of another job, queued by that job (a shard, a node): listed with its parent
PART = "part"
CAPABILITIES: tuple[str, ...] = (MODEL, PREDICTIONS, INBOX, PART)

CodeRef = tuple[str, str]  # (module, attribute), imported by the job layer when needed


@dataclass(frozen=True)
class JobKind:
    """One kind of queued job.

    ``spec`` names the pydantic model of its document (None: a full `JobConfig`, as for ``train``);
    ``runner`` names ``fn(run: JobRun, spec) -> artifacts``; ``submittable`` says whether ``POST /jobs``
    / ``segpipe submit`` accept it (others are queued by segpipe itself); ``preflight`` names
    ``check(stored_spec, stores)``, run at submit inside the job's path confinement so a job that could
    not run is refused then (None: nothing beyond parsing); ``produces`` holds its capabilities.
    """

    name: str
    spec: CodeRef | None
    runner: CodeRef
    queue: str = "gpu"
    submittable: bool = True
    description: str = ""
    preflight: CodeRef | None = None
    produces: frozenset[str] = field(default_factory=frozenset)


KINDS: Registry[JobKind] = Registry("job kind")


def register(kind: JobKind) -> JobKind:
    if kind.queue not in QUEUES:
        raise ValueError(f"job kind {kind.name}: unknown queue {kind.queue!r}; known: {', '.join(QUEUES)}")
    unknown = sorted(kind.produces - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"job kind {kind.name}: unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
    KINDS.add(kind.name, kind, description=kind.description, tags=("submittable",) if kind.submittable else ())
    return kind


def get(name: str) -> JobKind:
    """The kind called `name`; `ConfigError` listing the known kinds otherwise."""
    if name not in KINDS:
        raise ConfigError(f"unknown job kind {name!r}; known: {', '.join(names())}")
    return KINDS.get(name)


def names() -> tuple[str, ...]:
    """Every kind, in registration order (the order the API documents them)."""
    return tuple(e.name for e in KINDS._entries.values())  # noqa: SLF001 - insertion order is the documented order


def submittable() -> tuple[str, ...]:
    """The kinds people may submit (``POST /jobs``, ``segpipe submit``)."""
    return tuple(n for n in names() if get(n).submittable)


def has(kind: str, capability: str) -> bool:
    """Whether jobs of `kind` have `capability` (`MODEL`, `PREDICTIONS`, ...); False for an unknown kind
    (a row written by a newer version)."""
    return kind in KINDS and capability in KINDS.get(kind).produces


def with_capability(capability: str) -> tuple[str, ...]:
    """The kinds that have `capability`, in registration order (for a store query: ``kind IN (...)``)."""
    return tuple(n for n in names() if capability in get(n).produces)


_SPECS = "segpipe.jobs.specs"
_CHECKS = "segpipe.jobs.preflight"


def _register_builtin() -> None:
    register(JobKind("train", None, ("segpipe.jobs.training", "run_train"), preflight=(_CHECKS, "check_train"),
                     produces=frozenset({MODEL}),
                     description="train a model from a job config; a named config also registers a version"))
    register(JobKind("evaluate", (_SPECS, "EvaluateSpec"), ("segpipe.jobs.evaluation", "run_evaluate"),
                     preflight=(_CHECKS, "check_evaluate"), description="evaluate a model on a dataset split"))
    register(JobKind("predict", (_SPECS, "PredictSpec"), ("segpipe.jobs.prediction", "run_predict"),
                     preflight=(_CHECKS, "check_predict"), produces=frozenset({PREDICTIONS, INBOX}),
                     description="predict a folder of images; large jobs are split into predict-shard jobs"))
    register(JobKind("retrain", (_SPECS, "RetrainSpec"), ("segpipe.retrain.job", "run_retrain"), submittable=False,
                     produces=frozenset({MODEL}),
                     description="scheduled retraining: train, evaluate against production, gate the promotion"))
    register(JobKind("predict-shard", (_SPECS, "ShardSpec"), ("segpipe.jobs.sharding.runner", "run_shard"),
                     submittable=False, produces=frozenset({PART}),
                     description="one slice of a sharded predict job (queued by its parent)"))
    register(JobKind("train-node", (_SPECS, "NodeSpec"), ("segpipe.jobs.distributed", "run_node"), submittable=False,
                     produces=frozenset({PART}),
                     description="one host of a multi-node training (queued by the training's first node)"))
    register(JobKind("box-mask", (_SPECS, "BoxMaskSpec"), ("segpipe.jobs.box_mask", "run_box_mask"),
                     queue="interactive", submittable=False, produces=frozenset({INBOX}),
                     description="the mask of the object inside a drawn box (queued by the Label Studio backend "
                                 "for its smart rectangle tool)"))


_register_builtin()
