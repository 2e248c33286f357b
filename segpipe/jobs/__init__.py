"""The job layer: everything between a queued job's row and the library that does its work.

- `kinds` — the vocabulary of job kinds (names, queues, runners, submit checks);
- `specs` — what each kind runs, as validated data; `preflight` — submit-time checks;
- `run` — the run machinery (`JobRun`, the lease's heartbeat, `LeaseLost`, `HandedOff`);
- `model_refs` — ``job:<id>`` / ``NAME@production`` / path → checkpoint;
- runners: `training`, `evaluation`, `prediction`, `distributed`, `box_mask`, `sharding`;
- `exports` — a predict job's stored predictions → the export formats;
- `execute` — claim a job and run it (the workers' entry point).

`segpipe.stores` never imports this package; `segpipe.retrain`, the API, the CLI and the workers use it
from above (docs/explanations/architecture.md).
"""
