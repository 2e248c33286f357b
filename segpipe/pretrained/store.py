"""Named pretrained weights kept in the artifact store: downloaded once, checked, the same bytes everywhere.

A name (`segpipe.pretrained.sources`) resolves to ``<artifact root>/weights/<source>/<file>``.
The first worker (or ``segpipe weights pull``) that needs it downloads it from the library's URL —
or from ``SEGPIPE_WEIGHTS_MIRROR``, a URL prefix that stands in for the download hosts (the URL's
path is kept) — checks its sha256, and writes it there with a ``.json`` note (name, URL, sha256,
size). Every later use on any host sharing the artifact root reads that file and never the internet.

A file is checked on every use, before anything reads it as weights: its sha256 must start with the
prefix its name carries (torchvision) and equal the recorded one. A file that fails is refused with
both digests named, never loaded. With a remote artifact root (``s3://…``) a worker keeps a local
copy under ``SEGPIPE_HOME/cache/weights`` and checks that the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.errors import WeightsError
from segpipe.pretrained.sources import RemoteWeights, Role, lookup

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CachedWeights:
    """A file in the weights folder, with its note."""

    key: str
    path: Path
    size: int
    note: dict[str, Any]


class WeightStore:
    """The ``weights/`` folder of an artifact root (a local folder, or a `Uri` with a local copy)."""

    def __init__(self, artifact_root: Any, *, local_cache: Path, mirror: str | None = None) -> None:
        from segpipe.storage.uri import is_uri

        self.remote = artifact_root / "weights" if is_uri(artifact_root) else None
        self.folder = local_cache / "weights" if self.remote is not None else Path(artifact_root) / "weights"
        self.mirror = mirror.rstrip("/") if mirror else None

    @classmethod
    def from_settings(cls, settings: Any = None) -> WeightStore:
        from segpipe.settings import get_settings

        settings = settings or get_settings()
        return cls(settings.artifacts, local_cache=settings.cache_dir, mirror=settings.weights_mirror)

    # -- use ------------------------------------------------------------------------------------

    def path(self, ref: str, *, model: str | None = None, role: Role = "weights", download: bool = True) -> Path:
        """A checked local file for the weights `ref` names; downloaded into the store when missing."""
        entry = lookup(ref, model=model, role=role)
        local = self.folder / entry.key
        if not local.is_file() and self.remote is not None:
            self._fetch_remote(entry, local)
        if not local.is_file():
            if not download:
                raise WeightsError(f"{ref}: not in the weights store ({local}); `segpipe weights pull {ref}`")
            self._download(entry, local)
        self.verify(entry, local)
        return local

    def pull(self, ref: str, *, model: str | None = None, role: Role | None = None,
             file: Path | None = None, sha256: str | None = None) -> Path:
        """`path`, for the CLI: the role is guessed from the source (smp names are encoder weights);
        `file`: take this local file (downloaded elsewhere) instead of the URL, after the same checks
        (`sha256`: the digest its host publishes, needed where the name carries none)."""
        role = role or ("backbone_weights" if ref.startswith("smp:") else "weights")
        entry = lookup(ref, model=model, role=role)
        if file is not None:
            local = self.folder / entry.key
            if not Path(file).is_file():
                raise WeightsError(f"{ref}: {file}: no such file")
            self._store(entry, Path(file), local, expected=sha256.lower() if sha256 else None)
            return local
        return self.path(ref, model=model, role=role)

    def verify(self, entry: RemoteWeights, local: Path) -> str:
        """The file's sha256, after checking it against its name's prefix and its note; WeightsError else."""
        digest = sha256_of(local)
        recorded = _read_note(local).get("sha256")
        if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
            raise WeightsError(
                f"{entry.ref}: {local}: refused: its sha256 is {digest}, but its name says it starts with "
                f"{entry.sha256_prefix} (torch.hub's check); the file is damaged or not the one {entry.url} "
                f"serves. Delete it and pull it again."
            )
        if entry.checksum_header and not recorded:
            raise WeightsError(f"{entry.ref}: {local}: refused: no recorded sha256 beside it ({_note_path(local)}); "
                               f"pull it again (`segpipe weights pull {entry.ref}`)")
        if recorded and recorded != digest:
            raise WeightsError(
                f"{entry.ref}: {local}: refused: its sha256 is {digest}, the one recorded when it was downloaded "
                f"is {recorded}; the file changed since. Delete it and pull it again."
            )
        return digest

    def list(self) -> Iterator[CachedWeights]:
        """Every named weights file in the store (remote ones listed from the remote root)."""
        if self.remote is not None:
            from segpipe.storage import remote

            for key, info in sorted(remote.files_under(self.remote).items()):
                if not key.endswith(".json"):
                    yield CachedWeights(key, self.folder / key, int(info.get("size") or 0), {})
            return
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and path.suffix != ".json" and not path.name.startswith("."):
                yield CachedWeights(path.relative_to(self.folder).as_posix(), path, path.stat().st_size,
                                    _read_note(path))

    # -- internals ------------------------------------------------------------------------------

    def url_of(self, entry: RemoteWeights) -> str:
        """The URL to download: the library's, or the mirror's with the same path."""
        if not self.mirror:
            return entry.url
        path = urllib.parse.urlsplit(entry.url).path
        return self.mirror + path

    def _download(self, entry: RemoteWeights, local: Path) -> None:
        url = self.url_of(entry)
        try:
            expected = _header_sha256(url) if entry.checksum_header else None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise WeightsError(_offline_message(entry, url, local, e)) from None
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=local.parent, prefix=".part-")
        tmp = Path(tmp_name)
        try:
            _check_scheme(url)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as answer:  # noqa: S310 - scheme checked
                shutil.copyfileobj(answer, out, _CHUNK)
            self._store(entry, tmp, local, expected=expected, url=url)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise WeightsError(_offline_message(entry, url, local, e)) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _store(self, entry: RemoteWeights, source: Path, local: Path, *, expected: str | None,
               url: str | None = None) -> None:
        """Check `source` and move or copy it to `local` (atomically), with its note; upload if remote."""
        digest = sha256_of(source)
        if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
            raise WeightsError(
                f"{entry.ref}: refused: the file from {url or source} has sha256 {digest}, but its name says "
                f"it starts with {entry.sha256_prefix} (torch.hub's check); nothing was stored"
            )
        if entry.checksum_header and expected is None:
            raise WeightsError(f"{entry.ref}: a file for this name needs the sha256 its hub publishes "
                               f"(`segpipe weights pull {entry.ref} --file FILE --sha256 HEX`)")
        if expected is not None and digest != expected:
            raise WeightsError(f"{entry.ref}: refused: the file from {url} has sha256 {digest}, the host "
                               f"says {expected}; nothing was stored")
        local.parent.mkdir(parents=True, exist_ok=True)
        staged = local.with_name(f".{local.name}.new")
        shutil.copyfile(source, staged)
        note = {"name": entry.ref, "url": entry.url, "sha256": digest, "bytes": staged.stat().st_size}
        _note_path(local).write_text(json.dumps(note, indent=1))
        os.replace(staged, local)
        if self.remote is not None:
            from segpipe.storage import remote

            remote.upload(local, self.remote / entry.key)
            remote.upload(_note_path(local), self.remote / (entry.key + ".json"))

    def _fetch_remote(self, entry: RemoteWeights, local: Path) -> None:
        from segpipe.storage import remote

        assert self.remote is not None
        uri = self.remote / entry.key
        if not remote.exists(uri):
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        fs = remote.filesystem(uri)
        note_uri = self.remote / (entry.key + ".json")
        if remote.exists(note_uri):
            fs.get_file(note_uri.key, str(_note_path(local)))
        staged = local.with_name(f".{local.name}.new")
        fs.get_file(uri.key, str(staged))
        os.replace(staged, local)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _note_path(local: Path) -> Path:
    return local.with_name(local.name + ".json")


def _read_note(local: Path) -> dict[str, Any]:
    try:
        note = json.loads(_note_path(local).read_text())
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def _check_scheme(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are fetched, not {url}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _header_sha256(url: str) -> str:
    """The sha256 a Hugging Face style host publishes for a file: ``X-Linked-Etag`` (on its redirect)
    or ``ETag``, asked with HEAD before following any redirect, as huggingface_hub does."""
    _check_scheme(url)
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - scheme checked above
    try:
        answer = opener.open(request, timeout=_TIMEOUT_S)
        headers = answer.headers
    except urllib.error.HTTPError as e:  # a 3xx answer arrives as an HTTPError without redirecting
        if e.code >= 400:
            raise
        headers = e.headers
    tag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip().removeprefix("W/").strip('"')
    if len(tag) != 64 or any(c not in "0123456789abcdef" for c in tag):
        raise ValueError(f"{url}: the host gives no sha256 for the file (ETag {tag!r})")
    return tag


def _offline_message(entry: RemoteWeights, url: str, local: Path, error: BaseException) -> str:
    why = getattr(error, "reason", None) or error
    if isinstance(error, WeightsError):
        return str(error)
    if entry.checksum_header:  # the name carries no checksum: the file comes in with the hub's sha256
        hand_over = (f"then run `segpipe weights pull {entry.ref} --file FILE --sha256 HEX` with the sha256 the "
                     f"hub shows for the file (it is checked and stored at {local})")
    else:
        hand_over = (f"put the file at {local} (or run `segpipe weights pull {entry.ref} --file FILE`; its "
                     f"name's checksum is checked either way)")
    return (
        f"{entry.ref}: cannot download {url} ({why}). If this machine is offline, download that URL where "
        f"the internet is reachable and {hand_over}; or set SEGPIPE_WEIGHTS_MIRROR to a server that serves "
        f"the same path."
    )


def resolve_named(ref: str | Path | None, *, model: str, role: Role) -> str | Path | None:
    """`ref` itself, or — for a weights name — the checked local file the shared store gives for it
    (downloaded once if missing). What `build_model` calls before reading any weights."""
    from segpipe.pretrained.sources import is_named

    if ref is None or not is_named(ref):
        return ref
    return WeightStore.from_settings().path(str(ref), model=model, role=role)
