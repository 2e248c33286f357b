"""`Settings` for one test: everything it writes stays inside its tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segpipe.settings import Settings


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Home, the one data root (``tmp_path/data``, created), the artifact root, a SQLite database and a
    SQLite broker file, all under ``tmp_path``; ``overrides`` are further `Settings` fields (and may
    replace these). The database is the file the API tests' SQLite stores open."""
    (tmp_path / "data").mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "data_roots": [tmp_path / "data"],
        "artifact_root": tmp_path / "artifacts",
        "database_url": f"sqlite:///{tmp_path / 'segpipe.db'}",
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        **overrides,
    }
    return Settings(**values)
