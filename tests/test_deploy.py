"""docker-compose.yml is checked by Compose itself (no Docker engine runs here) and for what the
deployment promises: AOF + noeviction Redis, PostgreSQL, API, GPU worker with an NVIDIA reservation,
CPU worker, beat and flower sharing one broker, store and artifact volume; Prometheus scraping the API and
the workers with the metrics token, Grafana with the segpipe dashboard."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"SEGPIPE_TOKENS": "t1:admin,t2:annotator", "SEGPIPE_METRICS_TOKEN": "scrape", "SEGPIPE_GRAFANA_PASSWORD": "g"}


@pytest.fixture(scope="module")
def compose() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
    env = {**os.environ, **REQUIRED}
    done = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_has_every_role(compose: dict) -> None:
    assert set(compose["services"]) == {"redis", "postgres", "minio", "minio-bucket", "api", "worker-gpu",
                                        "worker-cpu", "gpu-host-worker", "beat", "flower", "prometheus", "grafana",
                                        "label-studio", "label-studio-connect"}


def test_redis_keeps_messages(compose: dict) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command


def test_gpu_worker_reserves_a_gpu_and_consumes_the_gpu_queue(compose: dict) -> None:
    worker = compose["services"]["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["command"][:2] == ["segpipe", "worker"] and "gpu" in worker["command"]


def test_services_share_one_broker_store_and_artifacts(compose: dict) -> None:
    roles = ("api", "worker-gpu", "worker-cpu", "beat", "flower")
    for key in ("SEGPIPE_BROKER_URL", "SEGPIPE_DATABASE_URL", "SEGPIPE_ARTIFACT_ROOT"):
        assert len({compose["services"][r]["environment"][key] for r in roles}) == 1, key
    assert compose["services"]["api"]["environment"]["SEGPIPE_BROKER_URL"].startswith("redis://")
    assert compose["services"]["api"]["environment"]["SEGPIPE_DATABASE_URL"].startswith("postgresql")


def test_tokens_are_required(compose: dict) -> None:
    exe = shutil.which("docker-compose")
    env = {**{k: v for k, v in os.environ.items() if k != "SEGPIPE_TOKENS"},
           **{k: v for k, v in REQUIRED.items() if k != "SEGPIPE_TOKENS"}}
    done = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode != 0 and "SEGPIPE_TOKENS" in done.stderr


def test_artifacts_live_in_the_object_store(compose: dict) -> None:
    api = compose["services"]["api"]
    assert api["environment"]["SEGPIPE_ARTIFACT_ROOT"].startswith("s3://segpipe/")
    assert api["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "s3://segpipe/data" in api["environment"]["SEGPIPE_DATA_ROOTS"].split(",")
    assert api["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    assert "mb --ignore-existing store/segpipe" in " ".join(compose["services"]["minio-bucket"]["command"])


def test_extra_gpu_hosts_run_only_supervised_workers(compose: dict) -> None:
    extra = compose["services"]["gpu-host-worker"]
    assert extra["profiles"] == ["gpu-host"]
    assert "segpipe worker --queues gpu --gpus" in " ".join(extra["command"])
    assert not extra.get("depends_on")  # the broker, store and object store are on the main host
    assert extra["environment"]["SEGPIPE_ARTIFACT_ROOT"] == compose["services"]["api"]["environment"]["SEGPIPE_ARTIFACT_ROOT"]


def test_prometheus_scrapes_the_api_and_every_worker_with_the_metrics_token(compose: dict) -> None:
    prometheus = compose["services"]["prometheus"]
    assert any(v.endswith(":/etc/prometheus/prometheus.yml:ro") and "deploy/prometheus.yml" in v
               for v in map(_volume, prometheus["volumes"]))
    assert "/prometheus/metrics-token" in " ".join(prometheus["command"])
    assert prometheus["environment"]["SEGPIPE_METRICS_TOKEN"] == "scrape"
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    by_job = {job["job_name"]: job for job in scrape}
    for job in by_job.values():
        assert job["authorization"] == {"type": "Bearer", "credentials_file": "/prometheus/metrics-token"}
    assert by_job["segpipe-api"]["static_configs"][0]["targets"] == ["api:8000"]
    workers = by_job["segpipe-worker"]["static_configs"][0]["targets"]
    for target in workers:
        service, port = target.split(":")
        env = compose["services"][service]["environment"]
        assert env["SEGPIPE_WORKER_METRICS_PORT"] == port and env["SEGPIPE_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert {t.split(":")[0] for t in workers} == {"worker-gpu", "worker-cpu"}


def test_grafana_loads_the_segpipe_dashboard(compose: dict) -> None:
    volumes = [_volume(v) for v in compose["services"]["grafana"]["volumes"]]
    assert any("deploy/grafana:/var/lib/grafana/dashboards" in v for v in volumes)
    assert any("deploy/grafana/provisioning:/etc/grafana/provisioning" in v for v in volumes)
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/segpipe.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def _volume(entry: object) -> str:
    """A service volume as ``source:target[:ro]``, whichever syntax Compose printed it in."""
    if isinstance(entry, str):
        return entry
    assert isinstance(entry, dict)
    return f"{entry.get('source')}:{entry['target']}" + (":ro" if entry.get("read_only") else "")


def test_label_studio_profile_allows_private_addresses_and_is_wired_to_segpipe(compose: dict) -> None:
    """The profile's Label Studio accepts segpipe (a private address) as ML backend and webhook target, serves
    the shared data volume as local files, and its one-shot connect service runs `segpipe labelstudio connect`."""
    ls, connect = compose["services"]["label-studio"], compose["services"]["label-studio-connect"]
    assert ls["profiles"] == ["labelstudio"] and connect["profiles"] == ["labelstudio"]
    env = ls["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == "/data"
    assert any(v.endswith((":/data:rw", ":/data")) for v in ls["volumes"])
    api_env = compose["services"]["api"]["environment"]
    assert api_env["SEGPIPE_LABEL_STUDIO_URL"] == "http://label-studio:8080"
    assert api_env["SEGPIPE_LABEL_STUDIO_FILES_ROOT"] == "/data"
    command = " ".join(connect["command"])
    assert "segpipe labelstudio connect" in command and "--segpipe-url http://api:8000" in command
    assert set(connect["depends_on"]) == {"api", "label-studio"}
