"""Where the repository is: the working directory and ``PYTHONPATH`` of processes the tests start."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
