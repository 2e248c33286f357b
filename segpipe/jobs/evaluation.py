"""The ``evaluate`` job kind's runner: a model's metrics on a dataset split, as ``metrics.json``."""

from __future__ import annotations

import json

from segpipe.jobs.model_refs import resolve_model_ref
from segpipe.jobs.run import JobRun, scalars, staged
from segpipe.jobs.specs import EvaluateSpec


def run_evaluate(run: JobRun, spec: EvaluateSpec) -> dict[str, str]:
    from segpipe.engine.predict import load_model
    from segpipe.engine.runner import evaluate_checkpoint

    spec = staged(run, spec)
    ref = resolve_model_ref(spec.model, run.stores)
    loaded = load_model(ref, device="cpu")
    config = loaded.config.model_copy(update={"data": spec.data})
    run.progress({"phase": "evaluate"}, force=True)
    metrics = evaluate_checkpoint(config, ref, split=spec.split, progress=lambda done, total: run.progress(
        {"phase": "evaluate", "images_done": done, "images_total": total}))
    path = run.folder / "metrics.json"
    path.write_text(json.dumps(metrics, indent=1))
    run.progress({"phase": "done", "metrics": scalars(metrics)}, force=True)
    return {"metrics.json": run.register("metrics.json", path)}
