"""The one confinement function: paths, names given by data, symlinked files and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segpipe.data.images import read_image
from segpipe.paths import PathNotAllowed, active_roots, check_read, confine, confine_name, confined_to, output_path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    import cv2

    cv2.imwrite(str(outside / "secret.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(root / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside)
    return root, outside


def test_confine_resolves_symlinked_files_and_folders(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert confine("ok.png", [root]) == (root / "ok.png").resolve()
    for bad in ("link.png", "linkdir/secret.png", "../outside/secret.png", "/etc/passwd", "a\x00b"):
        with pytest.raises(PathNotAllowed):
            confine(bad, [root])


def test_names_from_data_are_relative_and_stay_inside(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    assert confine_name("ok.png", root, [root]).name == "ok.png"
    assert confine_name("sub/x.png", root) == root / "sub/x.png"  # no roots active: lexical check only
    for bad in ("/etc/passwd", "../x.png", "a/../../x.png", "C:\\x.png", "", "\\\\server\\x"):
        with pytest.raises(PathNotAllowed):
            confine_name(bad, root)
    with pytest.raises(PathNotAllowed, match="symlink"):
        confine_name("link.png", root, [root])


def test_outputs_never_leave_their_folder(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    out = tmp_path / "job"
    out.mkdir()
    assert output_path(out, "masks/a.png") == (out / "masks/a.png").resolve()
    (out / "escape").symlink_to(layout[1])
    for bad in ("../x.png", "/tmp/x.png", "escape/x.png"):
        with pytest.raises(PathNotAllowed):
            output_path(out, bad)


def test_reads_are_confined_while_roots_are_active(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    assert active_roots() is None
    assert read_image(root / "link.png").shape == (4, 4, 3)  # a local run reads what its user can
    with confined_to([root]):
        assert active_roots() == (root.resolve(),)
        assert read_image(root / "ok.png").shape == (4, 4, 3)
        with pytest.raises(PathNotAllowed, match=r"link\.png"):
            read_image(root / "link.png")
        with pytest.raises(PathNotAllowed):
            check_read(outside / "secret.png")
    assert active_roots() is None
