"""deploy/grafana/segpipe.json checked against Grafana's own dashboard schema: the TypeScript types Grafana
generates from its CUE schema and publishes as @grafana/schema (``make grafana-schema`` installs them with
the TypeScript compiler). The dashboard is compiled as an object literal that ``satisfies Dashboard``: an
unknown key, a missing required field or a wrong type fails. No Grafana server package installs here (not
in Debian, PyPI or npm), so its PromQL is checked by the real Prometheus instead
(tests/integration/test_prometheus.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "segpipe.json"
SCHEMA_DIR = Path(os.environ.get("SEGPIPE_GRAFANA_SCHEMA", ROOT / ".tools" / "grafana-schema"))
TYPES = SCHEMA_DIR / "node_modules" / "@grafana" / "schema" / "dist" / "types" / "raw" / "dashboard" / "x" / "types.gen"
TSC = SCHEMA_DIR / "node_modules" / ".bin" / "tsc"


def compile_against_schema(dashboard: dict, folder: Path) -> subprocess.CompletedProcess[str]:
    source = folder / "dashboard.ts"
    source.write_text(f'import type {{ Dashboard }} from "{TYPES}";\n'
                      f"export const dashboard = {json.dumps(dashboard, indent=1)} satisfies Dashboard;\n")
    return subprocess.run([str(TSC), "--noEmit", "--strict", "--target", "es2022", str(source)],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def schema() -> None:
    if not TSC.is_file() or not Path(f"{TYPES}.d.ts").is_file():
        pytest.skip(f"@grafana/schema and typescript are not installed in {SCHEMA_DIR} (run `make grafana-schema`)")


def test_the_dashboard_satisfies_grafanas_schema(schema: None, tmp_path: Path) -> None:
    done = compile_against_schema(json.loads(DASHBOARD.read_text()), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_dashboard(schema: None, tmp_path: Path) -> None:
    broken = json.loads(DASHBOARD.read_text())
    broken["panels"][0]["titel"] = "typo"
    del broken["panels"][1]["gridPos"]["w"]
    done = compile_against_schema(broken, tmp_path)
    assert done.returncode != 0
    assert "'\"titel\"' does not exist in type 'Panel'" in done.stdout
    assert "Property 'w' is missing" in done.stdout


def test_every_panel_queries_prometheus_through_the_chosen_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "segpipe-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for metric in ("segpipe_queue_depth", "segpipe_jobs", "segpipe_worker_jobs_total", "segpipe_worker_job_duration_seconds",
                   "segpipe_worker_images_predicted_total", "segpipe_lease_expiries_total", "segpipe_republished_total",
                   "segpipe_http_requests_total", "segpipe_http_request_duration_seconds",
                   "process_resident_memory_bytes", "segpipe_build_info"):
        assert metric in exprs, f"no panel shows {metric}"
