"""Drift check: every venv the project builds holds exactly the packages of its lock in requirements/.

``python -m tests.tools.locks`` checks each venv that exists and exits 1 naming every difference;
``tests/test_locks.py`` runs the same comparison as tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "requirements"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
# Listed by the main venv, never by its lock: the project itself, installed editable beside it.
NOT_LOCKED = {"segpipe"}


def normalize(name: str) -> str:
    """PEP 503 name normalisation: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of every ``name==version`` line of a lock file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


_LIST_SCRIPT = ("import json, importlib.metadata as m; "
                "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def installed(python: Path) -> dict[str, str]:
    """``{normalized name: version}`` of every distribution the interpreter's environment holds."""
    done = subprocess.run([str(python), "-I", "-c", _LIST_SCRIPT], capture_output=True, text=True, timeout=120,
                          check=True)
    return {normalize(name): version for name, version in json.loads(done.stdout).items()}


def drift(locked: Mapping[str, str], present: Mapping[str, str]) -> list[str]:
    """Every difference between a lock and a venv, one readable line each (empty when they agree)."""
    lines = []
    for name in sorted(locked.keys() - present.keys()):
        lines.append(f"{name}=={locked[name]} is locked but not installed")
    for name in sorted(present.keys() - locked.keys() - NOT_LOCKED):
        lines.append(f"{name}=={present[name]} is installed but not in the lock")
    for name in sorted(locked.keys() & present.keys()):
        if locked[name] != present[name]:
            lines.append(f"{name} is {present[name]}, the lock says {locked[name]}")
    return lines


def npm_drift(lock: Path, folder: Path) -> list[str]:
    """Every difference between an npm ``package-lock.json`` and what ``folder/node_modules`` holds:
    each locked package at its path (``node_modules/@scope/name``, nested ones too) with its version,
    and no top-level package the lock does not name."""
    packages = {key: entry for key, entry in json.loads(lock.read_text()).get("packages", {}).items() if key}
    lines = []
    for key, entry in sorted(packages.items()):
        manifest = folder / key / "package.json"
        name = key.rsplit("node_modules/", 1)[1]
        if not manifest.is_file():
            lines.append(f"{name}@{entry.get('version')} is locked but not installed")
        elif (version := json.loads(manifest.read_text()).get("version")) != entry.get("version"):
            lines.append(f"{name} is {version}, the lock says {entry.get('version')}")
    modules = folder / "node_modules"
    top = [p for p in modules.iterdir() if not p.name.startswith(".")] if modules.is_dir() else []
    present = [f"{p.name}/{q.name}" for p in top if p.name.startswith("@") for q in p.iterdir()]
    present += [p.name for p in top if not p.name.startswith("@")]
    for name in sorted(present):
        if f"node_modules/{name}" not in packages:
            lines.append(f"{name} is installed but not in the lock")
    return lines


@dataclass(frozen=True)
class Environment:
    name: str
    lock: Path
    python: Path  # for an npm environment: its folder (node_modules inside)
    npm: bool = False

    @property
    def built(self) -> bool:
        return (self.python / "node_modules").is_dir() if self.npm else self.python.is_file()

    def drift(self) -> list[str]:
        if self.npm:
            return npm_drift(self.lock, self.python)
        return drift(read_lock(self.lock), installed(self.python))


def environments() -> Iterator[Environment]:
    """Each venv the Makefile builds, with its lock (tool venvs at their configured places)."""
    from tests.tools.venvs import VENVS, venv

    yield Environment("main", LOCKS / "main.lock", REPO / ".venv" / "bin" / "python")
    yield Environment("locker", LOCKS / "locker.lock", REPO / ".tools" / "bin" / "python")
    for tool in VENVS:
        yield Environment(tool, LOCKS / f"{tool}.lock", venv(tool) / "bin" / "python")
    yield Environment("grafana-schema", LOCKS / "grafana-schema" / "package-lock.json",
                      REPO / ".tools" / "grafana-schema", npm=True)


def main() -> int:
    failed = False
    for env in environments():
        if not env.built:
            print(f"{env.name}: not built, skipped")
            continue
        problems = env.drift()
        print(f"{env.name}: {'drifted from ' if problems else 'matches '}{env.lock.relative_to(REPO)}")
        for line in problems:
            print(f"  {line}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
