"""MLflow, over its REST API (no MLflow package needed in the training environment).

On when a tracking URI is set (``SEGPIPE_MLFLOW_TRACKING_URI``, or MLflow's own
``MLFLOW_TRACKING_URI``; http or https). One MLflow run per training run, in the experiment named by
``SEGPIPE_MLFLOW_EXPERIMENT`` (default: the config's ``name``, else "segpipe"): params are the
resolved config flattened (``train.lr``…), metrics per logged step and per epoch, the run's files
and pictures as artifacts (through the server's artifact proxy, ``mlflow server`` with
``--serve-artifacts``, its default), and tags ``segpipe.job_id`` and, once registered,
``segpipe.model_version``. A resumed run (same run directory) continues its MLflow run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from segpipe.tracking import TRACKERS, TrackingContext, flatten_params

RUN_FILE = "mlflow_run.json"  # in the run directory: which MLflow run a resumed training continues
_TIMEOUT_S = 15.0
_PARAM_VALUE_MAX = 500  # what every MLflow server version accepts
_BATCH = 500


class MlflowError(RuntimeError):
    pass


class MlflowClient:
    """The few REST calls we need; errors carry the server's message."""

    def __init__(self, uri: str) -> None:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise MlflowError(f"MLflow tracking URI {uri!r}: only http(s)://host[:port] servers are supported")
        self.base = uri.rstrip("/")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> dict[str, Any]:
        url = f"{self.base}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        # the configured tracking server (http or https)
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise MlflowError(f"{request.get_method()} {request.full_url}: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise MlflowError(f"{request.get_method()} {request.full_url}: {e}") from None
        return json.loads(raw) if raw.strip() else {}

    def experiment_id(self, name: str) -> str:
        try:
            found = self.call("GET", "experiments/get-by-name", query={"experiment_name": name})
            return str(found["experiment"]["experiment_id"])
        except MlflowError as e:
            if "RESOURCE_DOES_NOT_EXIST" not in str(e):
                raise
        return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])

    def upload(self, artifact_uri: str, rel_path: str, file: Path) -> None:
        """PUT one file through the server's artifact proxy (``mlflow-artifacts:`` artifact URIs)."""
        parsed = urllib.parse.urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":
            raise MlflowError(f"artifact store {artifact_uri!r} is not served by the tracking server "
                              f"(start `mlflow server` with --serve-artifacts)")
        remote = f"{parsed.path.strip('/')}/{rel_path}"
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(remote)}"
        request = urllib.request.Request(url, data=file.read_bytes(), method="PUT",  # noqa: S310 - the tracking server
                                         headers={"Content-Type": "application/octet-stream"})
        self._send(request)


class MlflowTracker:
    name = "mlflow"

    def __init__(self, client: MlflowClient, run_id: str, artifact_uri: str, uri: str) -> None:
        self.client, self.run_id, self.artifact_uri, self.uri = client, run_id, artifact_uri, uri

    def _log_batch(self, **lists: list[dict[str, Any]]) -> None:
        for key, items in lists.items():
            for i in range(0, len(items), _BATCH):
                self.client.call("POST", "runs/log-batch", {"run_id": self.run_id, key: items[i : i + _BATCH]})

    def log_params(self, params: dict[str, str]) -> None:
        self._log_batch(params=[{"key": k[:250], "value": v[:_PARAM_VALUE_MAX]} for k, v in params.items()])

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._log_batch(metrics=[{"key": k, "value": v, "timestamp": now, "step": int(step)} for k, v in values.items()])

    def log_pictures(self, pictures: list[Path], step: int) -> None:
        for path in pictures:
            self.client.upload(self.artifact_uri, f"plots/{path.name}", path)

    def log_artifacts(self, files: dict[str, Path]) -> None:
        for name, path in files.items():
            if path.is_file():
                self.client.upload(self.artifact_uri, name, path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._log_batch(tags=[{"key": k, "value": str(v)} for k, v in tags.items()])

    def close(self, status: str) -> None:
        self.client.call("POST", "runs/update", {"run_id": self.run_id, "status": status,
                                                 "end_time": int(time.time() * 1000)})

    def reference(self) -> dict[str, str]:
        return {"mlflow_uri": self.uri, "mlflow_run_id": self.run_id}


def tracking_uri(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("SEGPIPE_MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI") or None


@TRACKERS.register("mlflow", description="an MLflow tracking server, when a tracking URI is set")
def open_mlflow(ctx: TrackingContext) -> MlflowTracker | None:
    uri = tracking_uri(ctx.mlflow_uri)
    if not uri:
        return None
    client = MlflowClient(uri)
    saved = ctx.run_dir / RUN_FILE
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    logged: dict[str, str] = {}
    if previous.get("uri") == uri and previous.get("run_id"):
        run = client.call("GET", "runs/get", query={"run_id": previous["run_id"]})["run"]
        info = run["info"]
        logged = {p["key"]: p["value"] for p in run.get("data", {}).get("params", [])}
        client.call("POST", "runs/update", {"run_id": info["run_id"], "status": "RUNNING"})
    else:
        experiment = client.experiment_id(os.environ.get("SEGPIPE_MLFLOW_EXPERIMENT") or ctx.experiment)
        run_tags = [{"key": "mlflow.runName", "value": ctx.run_name}, {"key": "mlflow.source.name", "value": "segpipe"}]
        info = client.call("POST", "runs/create", {"experiment_id": experiment, "run_name": ctx.run_name,
                                                   "start_time": int(time.time() * 1000), "tags": run_tags})["run"]["info"]
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"uri": uri, "run_id": info["run_id"]}))
    tracker = MlflowTracker(client, info["run_id"], info["artifact_uri"], uri)
    params = {k: v[:_PARAM_VALUE_MAX] for k, v in flatten_params(ctx.config).items()}
    # MLflow never changes a logged param: a resumed run with a changed config (more epochs…) keeps
    # the first values as params and says what changed in a tag
    changed = {k: v for k, v in params.items() if k in logged and logged[k] != v}
    tracker.log_params({k: v for k, v in params.items() if k not in logged})
    tags = dict(ctx.tags)
    if changed:
        tags["segpipe.resumed_with"] = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))[:5000]
    tracker.set_tags(tags)
    return tracker


def tag_finished_run(refs: dict[str, str], tags: dict[str, str]) -> None:
    """Set tags on a run that already ended (e.g. the model version registered after training)."""
    if refs.get("mlflow_uri") and refs.get("mlflow_run_id"):
        client = MlflowClient(refs["mlflow_uri"])
        for key, value in tags.items():
            client.call("POST", "runs/set-tag", {"run_id": refs["mlflow_run_id"], "key": key, "value": str(value)})
