"""Job files (checkpoints, plots, exports) under one artifact root: ``root/jobs/<job_id>/...``.

Relative paths are what the database stores (`Job.artifacts`: name → path relative to the job's
folder), so the root can move or be mounted elsewhere on another host. Every path that comes from
outside — a name in an HTTP request, a path in the database — goes through `ArtifactStore.resolve`,
which refuses anything that would leave the job's folder: absolute paths, ``..`` parts and symlinks
that point out. (A symlink swapped in after the check is out of scope: the artifact root is written
only by segpipe's own workers.)
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from segpipe.errors import NotFoundError, SegpipeError
from segpipe.stores.jobs import JobStore

# uuid4 hex (our default) and Celery-style uuids with dashes; no separators, no leading dot.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class ArtifactPathError(SegpipeError):
    """A job id or artifact path that would point outside the job's artifact folder."""


class ArtifactStore:
    """Files of each job in ``root/jobs/<job_id>/``; names recorded in the job row when ``jobs`` is given.

    Without a `JobStore` (a local run with no database) `register` only checks the path and `list`
    reports the files found in the folder.
    """

    def __init__(self, root: str | Path, jobs: JobStore | None = None) -> None:
        # Resolved once: a root that is itself a symlink (a mounted volume) is fine.
        self.root = Path(root).expanduser().resolve()
        self.jobs = jobs

    def job_dir(self, job_id: str, create: bool = False) -> Path:
        """The job's folder (created if ``create``); refuses ids that are not plain names."""
        if not _JOB_ID.fullmatch(job_id):
            raise ArtifactPathError(f"job id {job_id!r} is not a valid job id (letters, digits, '-', '_')")
        path = self.root / "jobs" / job_id
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve(self, job_id: str, relative: str | PurePosixPath) -> Path:
        """The real path of ``relative`` inside the job's folder (it need not exist yet).

        Raises `ArtifactPathError` for an empty or absolute path, a ``..`` part, or a symlink (at any
        level) that leads out of the folder.
        """
        text = str(relative)
        base = self.job_dir(job_id)
        where = f"artifact path {text!r} of job {job_id}"
        if not text.strip() or "\x00" in text:
            raise ArtifactPathError(f"{where}: empty or contains a NUL character")
        # Backslashes are separators to Windows clients; treat them as such rather than as name characters.
        posix = PurePosixPath(text.replace("\\", "/"))
        if posix.is_absolute() or PureWindowsPath(text).drive:
            raise ArtifactPathError(f"{where}: absolute paths are not allowed; give a path relative to the job folder")
        if ".." in posix.parts:
            raise ArtifactPathError(f"{where}: '..' is not allowed")
        real = (base / posix).resolve()
        if not real.is_relative_to(base.resolve()):
            raise ArtifactPathError(f"{where}: leads outside the job folder {base} (through a symlink)")
        return real

    def path_for(self, job_id: str, name: str) -> Path:
        """Where to write artifact ``name`` (e.g. ``checkpoints/last.pt``); its parent folders are created."""
        path = self.resolve(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, job_id: str, path: str | Path) -> str:
        """``path`` (absolute, or relative to the job folder) as the POSIX relative path the store keeps."""
        base = self.job_dir(job_id).resolve()
        candidate = Path(path)
        real = candidate.resolve() if candidate.is_absolute() else self.resolve(job_id, str(path))
        if not real.is_relative_to(base):
            raise ArtifactPathError(f"artifact {str(path)!r} of job {job_id} is not inside the job folder {base}")
        return real.relative_to(base).as_posix()

    def register(self, job_id: str, name: str, path: str | Path) -> str:
        """Record an existing file under ``name``; returns its path relative to the job folder."""
        if not name or not name.strip():
            raise ArtifactPathError(f"job {job_id}: an artifact needs a non-empty name")
        relative = self.relative(job_id, path)
        if not (self.job_dir(job_id) / relative).is_file():
            raise NotFoundError(f"artifact {name!r} of job {job_id}: no file at {relative}")
        if self.jobs is not None:
            self.jobs.add_artifacts(job_id, {name: relative})
        return relative

    def list(self, job_id: str) -> dict[str, str]:
        """Name → relative path: the recorded artifacts, or every file in the folder when there is no JobStore."""
        if self.jobs is not None:
            return dict(self.jobs.get(job_id).artifacts)
        base = self.job_dir(job_id)
        if not base.is_dir():
            return {}
        files = (p.relative_to(base).as_posix() for p in sorted(base.rglob("*")) if p.is_file())
        return {rel: rel for rel in files}
