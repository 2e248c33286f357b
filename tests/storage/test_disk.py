"""A full disk, for real (issue 22, point 4): a 2 MB tmpfs mounted for the test (root only; skipped
otherwise). The free-space check refuses a checkpoint that cannot fit before writing a byte; a write
that runs out of space mid-way (ENOSPC from the kernel, through torch's zip writer) leaves no partial
file and the previous checkpoint intact; both say "disk full at PATH". Before, torch.save raised
"[enforce fail at inline_container.cc:…] PytorchStreamWriter failed writing file" and left a
temporary file behind."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from segpipe.engine.checkpoint import load_checkpoint, save_checkpoint
from segpipe.storage.disk import DiskFull, ensure_free, write_atomic, write_bytes_atomic

MB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real 2 MB filesystem (tmpfs), with SEGPIPE_MIN_FREE_MB 0 so that only what fits matters."""
    from segpipe.settings import get_settings

    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    monkeypatch.setenv("SEGPIPE_MIN_FREE_MB", "0")
    get_settings.cache_clear()
    try:
        yield mount
    finally:
        get_settings.cache_clear()
        subprocess.run(["umount", str(mount)], check=True)


def _state(megabytes: float) -> dict[str, torch.Tensor]:
    return {"model": {"w": torch.ones(int(megabytes * MB / 4), dtype=torch.float32)}}  # type: ignore[dict-item]


def test_a_checkpoint_that_cannot_fit_is_refused_before_writing(small_disk: Path) -> None:
    with pytest.raises(DiskFull, match=rf"^disk full at {small_disk}: needed 3\.0 MB plus 0\.0 MB kept free "
                                       r"\(SEGPIPE_MIN_FREE_MB\), 2\.0 MB free$"):
        save_checkpoint(small_disk / "last.pt", _state(3))
    assert list(small_disk.iterdir()) == []


def test_enospc_mid_write_leaves_no_partial_file_and_keeps_the_previous(small_disk: Path) -> None:
    """No pre-check here: the kernel itself says ENOSPC while torch writes."""
    target = small_disk / "last.pt"
    save_checkpoint(target, _state(0.5))
    before = target.read_bytes()
    with pytest.raises(DiskFull, match=rf"^disk full at {target}: the write did not fit, [0-9.]+ MB free"):
        write_atomic(target, lambda f: torch.save(_state(1.8), f))
    assert [p.name for p in small_disk.iterdir()] == ["last.pt"] and target.read_bytes() == before
    assert load_checkpoint(target)["model"]["w"].numel() == int(0.5 * MB / 4)


def test_plain_bytes_and_the_reserve(small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segpipe.settings import get_settings

    with pytest.raises(DiskFull, match=r"needed 3\.0 MB"):
        write_bytes_atomic(small_disk / "blob", b"x" * 3 * MB)
    write_bytes_atomic(small_disk / "blob", b"x" * MB)
    monkeypatch.setenv("SEGPIPE_MIN_FREE_MB", "1.5")
    get_settings.cache_clear()
    with pytest.raises(DiskFull, match=r"needed 0\.0 MB plus 1\.5 MB kept free \(SEGPIPE_MIN_FREE_MB\), 1\.0 MB free"):
        ensure_free(small_disk, 0)
    assert sorted(p.name for p in small_disk.iterdir()) == ["blob"]
