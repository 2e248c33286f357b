"""What a ``retrain`` job does (how any finished training becomes a model version: `segpipe.jobs.versions`).

`run_retrain` (called by `segpipe.jobs.execute.run_job`):

1. hash the dataset (the content the new version is trained on);
2. train the candidate — from production's checkpoint when ``fine_tune_from_production`` — resuming
   from the job's own last checkpoint if the job was interrupted;
3. register it as a candidate version (dataset hash, metrics, resolved config, checkpoint, parent =
   the production version when training started, job id);
4. evaluate the candidate AND the current production version on the same fixed validation set, in
   this job, with the same evaluation settings;
5. let the gate decide, and record the decision — promoting in the same transaction, and only if
   production is still the version it was compared with;
6. trained from a Label Studio project and promoted: title the project's segpipe backends with the new
   version (`segpipe.labelstudio.connect.follow_version`), so its data manager sorts by the new version's
   prediction scores. A Label Studio that cannot be reached is logged; the promotion stands.

Steps 3 and 5 are idempotent per job: a job that is run again (its worker died) finds its version and
its decision and does not register or decide twice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe.config import JobConfig
from segpipe.data.dataset_hash import dataset_hash
from segpipe.errors import ConfigError, SegpipeError
from segpipe.gate_config import scalar_metrics
from segpipe.jobs.run import staged
from segpipe.jobs.specs import RetrainSpec
from segpipe.jobs.training import run_artifacts
from segpipe.jobs.versions import checkpoint_path, completed, register_run
from segpipe.retrain.gate import decide
from segpipe.stores import ModelVersion, PromotionDecision, Stores

if TYPE_CHECKING:
    from segpipe.jobs.run import JobRun

log = logging.getLogger("segpipe.retrain")


def run_retrain(run: JobRun, spec: RetrainSpec) -> dict[str, str]:
    """The ``retrain`` job kind (see the module docstring); returns the job's artifacts."""
    from segpipe.engine.runner import train  # torch: imported when a retrain job runs

    spec = staged(run, spec)  # object-store data: this worker's cached copy, as a training's
    stores = run.stores
    run_dir = run.folder / "run"
    candidate = stores.versions.for_job(run.job_id)
    if candidate is None:
        # A job run again (its worker died) keeps the hash of the data its first run started training on.
        data_hash = (stores.jobs.get(run.job_id).progress or {}).get("dataset_hash") or dataset_hash(spec.dataset)
        run.progress({"phase": "train", "dataset_hash": data_hash}, force=True)
        parent = stores.versions.production(spec.name)
        config = training_config(spec, run_dir, parent, stores)
        result = train(config, resume=True, show_progress=True, should_stop=run.should_stop,
                       report=lambda p: run.progress({"phase": "train", **p}),
                       tracking_tags={"segpipe.job_id": run.job_id})
        if not completed(result):
            return run_artifacts(run, run_dir)
        candidate = register_run(stores, run.job_id, config, result, data_hash=data_hash,
                                 parent=parent.version if parent else None)
        if result.tracking:
            from segpipe.tracking import add_tags

            add_tags(result.tracking, {"segpipe.model_version": f"{candidate.name}@{candidate.version}"})
    decision = stores.decisions.for_version(spec.name, candidate.version, source="gate")
    if decision is None:
        decision = gate_candidate(run, spec, candidate)
    if decision.outcome == "promoted" and spec.label_studio_project is not None:
        follow_in_label_studio(run, spec.label_studio_project, spec.name, candidate.version)
    path = run.folder / "decision.json"
    path.write_text(json.dumps(decision_dict(decision), indent=1, default=str))
    run.progress({"phase": "done", "model": f"{spec.name}@{candidate.version}", "decision": decision.outcome,
                  "reason": decision.reason, "metrics": decision.candidate_metrics}, force=True)
    return {**run_artifacts(run, run_dir), "decision.json": run.register("decision.json", path)}


def follow_in_label_studio(run: JobRun, project: int, name: str, version: int) -> None:
    """Step 6 of the module docstring; what it did goes into the job's progress (``label_studio``)."""
    from segpipe.labelstudio.client import LabelStudioClient
    from segpipe.labelstudio.connect import follow_version

    settings = run.settings
    if not settings.label_studio_url or not settings.label_studio_token:
        return  # the tick could not have pulled the project either
    try:
        with LabelStudioClient(settings.label_studio_url, settings.label_studio_token) as ls:
            steps = follow_version(ls, project, name, f"{name}@{version}")
    except SegpipeError as e:
        log.warning("model %s@%s is production, but Label Studio project %s still names the old version: %s",
                    name, version, project, e)
        run.progress({"label_studio": f"project {project} not updated: {e}"}, force=True)
        return
    run.progress({"label_studio": f"project {project}: " + ("; ".join(map(str, steps)) or "unchanged")}, force=True)


def training_config(spec: RetrainSpec, run_dir: Path, parent: ModelVersion | None, stores: Stores) -> JobConfig:
    config = spec.config.model_copy(deep=True)
    config.name = spec.name
    config.output_dir = run_dir
    if spec.fine_tune_from_production and parent is not None:
        config.model.weights = str(checkpoint_path(parent, stores))
    return config


def evaluation_config(spec: RetrainSpec) -> JobConfig:
    """The config both versions are evaluated with: the training config with ``validation`` as data.val."""
    data = spec.config.data
    if data is None:
        raise ConfigError(f"retrain {spec.name}: the training config has no data section")
    return spec.config.model_copy(update={"data": data.model_copy(update={"val": spec.validation})})


def gate_candidate(run: JobRun, spec: RetrainSpec, candidate: ModelVersion) -> PromotionDecision:
    """Evaluate candidate and production on the fixed validation set, decide, record (and maybe promote)."""
    from segpipe.engine.runner import evaluate_checkpoint

    stores = run.stores
    production = stores.versions.production(spec.name)
    expected = production.version if production is not None else None
    record: dict[str, Any] = {"source": "gate", "metric": spec.gate.metric, "job_id": run.job_id,
                              "decided_by": "gate", "expect_production": expected, "check_production": True}
    if production is not None and production.version == candidate.version:
        return stores.decisions.record(spec.name, candidate.version, "promoted",
                                       "it was already promoted by hand before the gate ran", **record)
    config = evaluation_config(spec)
    device = spec.config.train.device
    run.progress({"phase": "evaluate", "model": f"{spec.name}@{candidate.version}"}, force=True)
    cand = scalar_metrics(evaluate_checkpoint(config, checkpoint_path(candidate, stores), device=device))
    prod: dict[str, float] | None = None
    if production is not None:
        run.progress({"phase": "evaluate", "model": f"{spec.name}@{production.version}"}, force=True)
        try:
            prod = scalar_metrics(evaluate_checkpoint(config, checkpoint_path(production, stores), device=device))
        except SegpipeError as e:
            reason = (f"production version {production.version} cannot be evaluated on the validation set ({e}); "
                      f"nothing to compare with, so the candidate was not promoted: promote it by hand if it should be")
            return stores.decisions.record(spec.name, candidate.version, "rejected", reason,
                                           candidate_metrics=cand, **record)
    verdict = decide(spec.gate, cand, prod)
    return stores.decisions.record(spec.name, candidate.version, verdict.outcome, verdict.reason,
                                   candidate_metrics=cand, production_metrics=prod,
                                   checks=verdict.checks_as_dicts(), **record)


def decision_dict(decision: PromotionDecision) -> dict[str, Any]:
    """A decision as plain data (the job's decision.json, ``segpipe models NAME --json``)."""
    keys = ("name", "version", "previous_version", "outcome", "source", "reason", "metric", "candidate_metrics",
            "production_metrics", "checks", "job_id", "decided_by", "created_at")
    return {k: getattr(decision, k) for k in keys}
