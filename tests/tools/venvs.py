"""The real tools' own environments, outside segpipe's venv (their pins conflict with ours:
label-studio wants numpy 2.2 and its own pydantic, datumaro its own pillow), each installed from its lock
in requirements/ by ``make labelstudio-venv`` / ``datumaro-venv`` / ``mlflow-venv`` (which .ci/run calls).

``SEGPIPE_LABEL_STUDIO_VENV`` / ``SEGPIPE_DATUMARO_VENV`` / ``SEGPIPE_MLFLOW_VENV`` point elsewhere
(default ``<repo>/.venvs/<tool>``).
Tests run the tools' importers through the scripts beside this file, as subprocesses in those venvs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(__file__).resolve().parent
VENVS = {
    "label-studio": ("SEGPIPE_LABEL_STUDIO_VENV", "labelstudio-venv"),
    "datumaro": ("SEGPIPE_DATUMARO_VENV", "datumaro-venv"),
    "mlflow": ("SEGPIPE_MLFLOW_VENV", "mlflow-venv"),
}


def venv(tool: str) -> Path:
    variable, _ = VENVS[tool]
    return Path(os.environ.get(variable) or REPO / ".venvs" / tool)


def tool_python(tool: str) -> Path:
    """The tool venv's interpreter; skips the test (saying how to build it) when the venv is missing."""
    python = venv(tool) / "bin" / "python"
    if not python.is_file():
        variable, target = VENVS[tool]
        pytest.skip(f"{tool} is not installed at {venv(tool)}: run `make {target}` or set {variable}")
    return python


def run_tool(tool: str, script: str, *args: str | Path, timeout: float = 300) -> Any:
    """Run ``tests/tools/<script>`` in the tool's venv; its stdout is JSON. Fails with the tool's stderr."""
    done = subprocess.run([str(tool_python(tool)), str(TOOLS / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"{tool} {script} {' '.join(map(str, args))} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)
