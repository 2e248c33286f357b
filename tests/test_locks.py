"""Every venv the project builds matches its lock in requirements/ (issue 23: an unpinned tool venv let
an upstream release, sentry-sdk 3.0, break the Label Studio server overnight)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools.locks import Environment, drift, environments, npm_drift, read_lock

ENVIRONMENTS = list(environments())


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=[env.name for env in ENVIRONMENTS])
def test_built_venv_matches_its_lock(env: Environment) -> None:
    if not env.built:
        pytest.skip(f"{env.name} is not built: `make` builds it from {env.lock.name}")
    problems = env.drift()
    assert not problems, f"{env.name} venv drifted from {env.lock.name}:\n" + "\n".join(problems)


def test_every_lock_pins_with_hashes() -> None:
    for env in (e for e in ENVIRONMENTS if not e.npm):
        text = env.lock.read_text()
        pins = read_lock(env.lock)
        assert pins, f"{env.lock.name} pins nothing"
        assert text.count("--hash=sha256:") >= len(pins), f"{env.lock.name} has a pin without a hash"


def test_label_studio_lock_keeps_sentry_sdk_2() -> None:
    # Label Studio 1.23.2 cannot start with sentry-sdk 3 ("Unknown option 'send_default_pii'").
    version = read_lock(next(e.lock for e in ENVIRONMENTS if e.name == "label-studio"))["sentry-sdk"]
    assert int(version.split(".")[0]) < 3


def test_drift_names_missing_extra_and_changed_packages() -> None:
    locked = {"sentry-sdk": "2.76.0", "django": "5.2.20", "numpy": "2.2.6"}
    present = {"sentry-sdk": "3.0.0", "numpy": "2.2.6", "requests": "2.32.0", "segpipe": "0.1.0"}
    assert drift(locked, present) == [
        "django==5.2.20 is locked but not installed",
        "requests==2.32.0 is installed but not in the lock",
        "sentry-sdk is 3.0.0, the lock says 2.76.0",
    ]


def test_lock_names_are_normalized(tmp_path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("Django_Filter==24.3 \\\n    --hash=sha256:ab\nuvicorn[standard]==0.30.0 ; python_version >= '3.8'\n"
                    "    # via foo==1.0\n")
    assert read_lock(lock) == {"django-filter": "24.3", "uvicorn": "0.30.0"}


def test_the_npm_lock_pins_every_package_with_its_integrity() -> None:
    env = next(e for e in ENVIRONMENTS if e.npm)
    packages = {k: v for k, v in json.loads(env.lock.read_text())["packages"].items() if k}
    assert packages and all(v.get("version") and v.get("integrity", "").startswith("sha512-") for v in packages.values())


def test_npm_drift_names_missing_changed_and_extra_packages(tmp_path: Path) -> None:
    lock = tmp_path / "package-lock.json"
    lock.write_text(json.dumps({"lockfileVersion": 3, "packages": {
        "": {"dependencies": {}}, "node_modules/typescript": {"version": "5.9.3"},
        "node_modules/@grafana/schema": {"version": "13.2.3"}, "node_modules/left-pad": {"version": "1.3.0"}}}))
    for name, version in (("typescript", "5.9.2"), ("@grafana/schema", "13.2.3"), ("is-number", "7.0.0")):
        (tmp_path / "node_modules" / name).mkdir(parents=True)
        (tmp_path / "node_modules" / name / "package.json").write_text(json.dumps({"name": name, "version": version}))
    assert npm_drift(lock, tmp_path) == [
        "left-pad@1.3.0 is locked but not installed",
        "typescript is 5.9.2, the lock says 5.9.3",
        "is-number is installed but not in the lock",
    ]
