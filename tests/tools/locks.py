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


@dataclass(frozen=True)
class Environment:
    name: str
    lock: Path
    python: Path


def environments() -> Iterator[Environment]:
    """Each venv the Makefile builds, with its lock (tool venvs at their configured places)."""
    from tests.tools.venvs import VENVS, venv

    yield Environment("main", LOCKS / "main.lock", REPO / ".venv" / "bin" / "python")
    yield Environment("locker", LOCKS / "locker.lock", REPO / ".tools" / "bin" / "python")
    for tool in VENVS:
        yield Environment(tool, LOCKS / f"{tool}.lock", venv(tool) / "bin" / "python")


def main() -> int:
    failed = False
    for env in environments():
        if not env.python.is_file():
            print(f"{env.name}: not built ({env.python.parent.parent}), skipped")
            continue
        problems = drift(read_lock(env.lock), installed(env.python))
        print(f"{env.name}: {'drifted from ' if problems else 'matches '}{env.lock.relative_to(REPO)}")
        for line in problems:
            print(f"  {line}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
