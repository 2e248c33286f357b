"""Job files (checkpoints, plots, exports) under one artifact root: ``root/jobs/<job_id>/...``.

Relative paths are what the database stores (`Job.artifacts`: name → path relative to the job's
folder), so the root can move or be mounted elsewhere on another host. Every path that comes from
outside — a name in an HTTP request, a path in the database — goes through `ArtifactStore.resolve`,
which refuses anything that would leave the job's folder: absolute paths, ``..`` parts and symlinks
that point out. (A symlink swapped in after the check is out of scope: the artifact root is written
only by segpipe's own workers.)

The root may be an object-store URI (``s3://bucket/prefix``): then each worker writes job files in a
local *mirror* (``SEGPIPE_HOME/cache/artifacts``) and `register` uploads them to
``<root>/jobs/<job_id>/…``; `fetch` reads another worker's files through the download cache (keyed
by ETag, size-capped). The relative paths in the database are the same in both cases.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from segpipe.errors import NotFoundError, SegpipeError
from segpipe.limits import check_path
from segpipe.storage.uri import Uri, is_uri, parse_uri
from segpipe.stores.jobs import JobStore

if TYPE_CHECKING:
    from segpipe.storage.cache import DownloadCache

# uuid4 hex (our default) and Celery-style uuids with dashes; no separators, no leading dot.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class ArtifactPathError(SegpipeError):
    """A job id or artifact path that would point outside the job's artifact folder."""


class ArtifactStore:
    """Files of each job in ``root/jobs/<job_id>/``; names recorded in the job row when ``jobs`` is given.

    Without a `JobStore` (a local run with no database) `register` only checks the path and `list`
    reports the files found in the folder.
    """

    def __init__(self, root: str | Path, jobs: JobStore | None = None, *, mirror: Path | None = None,
                 cache: DownloadCache | None = None) -> None:
        self.remote: Uri | None = parse_uri(str(root), what="artifact root") if is_uri(root) else None
        if self.remote is not None and mirror is None:
            raise ValueError("a remote artifact root needs a local mirror folder")
        # Resolved once: a root that is itself a symlink (a mounted volume) is fine.
        self.root = Path(mirror if self.remote is not None else root).expanduser().resolve()  # type: ignore[arg-type]
        self.jobs = jobs
        self.cache = cache

    @property
    def inbox(self) -> Path:
        """Images the Label Studio backend fetched for an interactive predict job: a data root of
        segpipe's own, readable by jobs like the configured data roots (and nothing else under ``root``)."""
        return self.root / "ls-inbox"

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
        check_path(where, text)  # LimitExceeded (422): the OS would say only "File name too long"
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
        self.upload(job_id, relative)
        if self.jobs is not None:
            self.jobs.add_artifacts(job_id, {name: relative})
        return relative

    def register_folder(self, job_id: str, path: str | Path) -> str:
        """A folder of files (masks, polygons) as an artifact path; uploaded when the root is remote."""
        relative = self.relative(job_id, path)
        self.upload(job_id, relative)
        return relative

    # -- a remote root ---------------------------------------------------------------------------

    def uri(self, job_id: str, relative: str = "") -> Uri:
        """Where a job file lives in the remote root."""
        assert self.remote is not None
        base = self.remote / "jobs" / self.job_dir(job_id).name
        return base / relative if relative else base

    def upload(self, job_id: str, relative: str) -> None:
        """Copy the mirror's file or folder ``relative`` to the remote root (nothing to do for a local root)."""
        if self.remote is None:
            return
        from segpipe.storage import remote

        local = self.resolve(job_id, relative)
        inside = local.relative_to(self.job_dir(job_id).resolve()).as_posix()
        remote.upload_tree(local, self.uri(job_id, "" if inside == "." else inside))

    def upload_files(self, job_id: str, paths: list[Path]) -> None:
        """Copy these files of the job's folder to the remote root, each under its own name (nothing to
        do for a local root): a shard of a predict job uploads the files it wrote, not the whole folder."""
        if self.remote is None:
            return
        from segpipe.storage import remote

        for path in paths:
            remote.upload(path, self.uri(job_id, self.relative(job_id, path)))

    def fetch(self, job_id: str, relative: str) -> Path:
        """A readable local copy of the job's file or folder ``relative``: the file itself for a local
        root; for a remote one, what this worker wrote, else a download through the cache."""
        local = self.resolve(job_id, relative)
        if self.remote is None:
            return local
        from segpipe.storage import remote
        from segpipe.storage.staging import stage_uri

        uri = self.uri(job_id, PurePosixPath(relative).as_posix())
        if not remote.exists(uri):
            if local.exists():
                return local
            raise NotFoundError(f"artifact {relative!r} of job {job_id}: not in {self.remote}")
        if self.cache is None:
            raise ValueError("a remote artifact root needs a download cache to read from")
        return stage_uri(uri, self.cache)

    def fetch_from_root(self, relative: str) -> Path:
        """`fetch` for a path relative to the artifact root (``jobs/<id>/…``, as model versions store it)."""
        parts = PurePosixPath(relative).parts
        if len(parts) < 3 or parts[0] != "jobs":
            raise ArtifactPathError(f"artifact path {relative!r}: expected jobs/<job id>/<file>")
        return self.fetch(parts[1], PurePosixPath(*parts[2:]).as_posix())

    def exists(self, job_id: str, relative: str) -> bool:
        if self.resolve(job_id, relative).exists():
            return True
        if self.remote is None:
            return False
        from segpipe.storage import remote

        return remote.exists(self.uri(job_id, relative))

    def list(self, job_id: str) -> dict[str, str]:
        """Name → relative path: the recorded artifacts, or every file in the folder when there is no JobStore."""
        if self.jobs is not None:
            return dict(self.jobs.get(job_id).artifacts)
        base = self.job_dir(job_id)
        if not base.is_dir():
            return {}
        files = (p.relative_to(base).as_posix() for p in sorted(base.rglob("*")) if p.is_file())
        return {rel: rel for rel in files}
