from __future__ import annotations

import os

import pytest

from segpipe.errors import NotFoundError
from segpipe.stores.artifacts import ArtifactPathError, ArtifactStore

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def artifacts(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_path_for_stays_in_the_job_folder_and_makes_parents(artifacts):
    path = artifacts.path_for(JOB, "checkpoints/last.pt")
    assert path == artifacts.root / "jobs" / JOB / "checkpoints" / "last.pt"
    assert path.parent.is_dir() and not path.exists()
    assert artifacts.resolve(JOB, "checkpoints\\last.pt") == path  # a Windows-style separator


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("../other/secret.txt", "'..' is not allowed"),
        ("plots/../../x", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("C:\\Windows\\x", "absolute paths are not allowed"),
        ("..\\up", "'..' is not allowed"),
        ("", "empty"),
        ("a\x00b", "NUL"),
    ],
)
def test_resolve_refuses_paths_that_leave_the_job_folder(artifacts, relative, message):
    with pytest.raises(ArtifactPathError, match=message) as info:
        artifacts.resolve(JOB, relative)
    assert JOB in str(info.value)


def test_resolve_refuses_symlinks_that_point_out(artifacts, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    folder = artifacts.job_dir(JOB, create=True)
    os.symlink(outside, folder / "linked_dir")
    os.symlink(outside / "secret.txt", folder / "linked_file")
    for relative in ("linked_dir/secret.txt", "linked_file", "linked_dir"):
        with pytest.raises(ArtifactPathError, match="leads outside the job folder"):
            artifacts.resolve(JOB, relative)
    # A link that stays inside the folder is fine.
    (folder / "real.txt").write_text("ok")
    os.symlink(folder / "real.txt", folder / "alias.txt")
    assert artifacts.resolve(JOB, "alias.txt") == (folder / "real.txt").resolve()


def test_job_ids_must_be_plain_names(artifacts):
    for bad in ("../x", "a/b", ".hidden", "", "x" * 200):
        with pytest.raises(ArtifactPathError, match="not a valid job id"):
            artifacts.job_dir(bad)
    assert artifacts.job_dir("6f1c-uuid_with-dashes").name == "6f1c-uuid_with-dashes"


def test_register_records_the_artifact_in_the_job_row(store, jobs, tmp_path):
    job = jobs.create("train", "cfg", queue="gpu")
    artifacts = ArtifactStore(tmp_path / "root", jobs=jobs)
    best = artifacts.path_for(job.id, "checkpoints/best.pt")
    best.write_bytes(b"weights")
    assert artifacts.register(job.id, "best", best) == "checkpoints/best.pt"  # absolute path in
    artifacts.path_for(job.id, "plots/loss.png").write_bytes(b"png")
    assert artifacts.register(job.id, "loss_plot", "plots/loss.png") == "plots/loss.png"  # relative in
    assert artifacts.list(job.id) == {"best": "checkpoints/best.pt", "loss_plot": "plots/loss.png"}
    assert jobs.get(job.id).artifacts == artifacts.list(job.id)

    with pytest.raises(NotFoundError, match=r"no file at plots/missing\.png"):
        artifacts.register(job.id, "missing", "plots/missing.png")
    stray = tmp_path / "stray.pt"
    stray.write_bytes(b"x")
    with pytest.raises(ArtifactPathError, match="is not inside the job folder"):
        artifacts.register(job.id, "stray", stray)
    with pytest.raises(ArtifactPathError, match="non-empty name"):
        artifacts.register(job.id, " ", best)
    with pytest.raises(NotFoundError, match="job nope does not exist"):
        jobs.add_artifacts("nope", {"x": "y"})


def test_without_a_job_store_list_reports_the_files(artifacts):
    assert artifacts.list(JOB) == {}
    artifacts.path_for(JOB, "b/two.txt").write_text("2")
    artifacts.path_for(JOB, "one.txt").write_text("1")
    assert artifacts.register(JOB, "one", "one.txt") == "one.txt"
    assert artifacts.list(JOB) == {"b/two.txt": "b/two.txt", "one.txt": "one.txt"}


def test_upload_files_sends_only_those_files_under_their_names(tmp_path):
    """A shard of a predict job uploads the files it wrote, not its worker's whole folder (which may hold
    another shard's files); fsspec's in-memory filesystem stands in for the bucket (a real backend)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    remote = ArtifactStore("memory://uploadtest/root", mirror=tmp_path / "mirror")
    mine = [remote.path_for(JOB, f"predictions/masks/{name}.png") for name in ("a", "sub/b")]
    other = remote.path_for(JOB, "predictions/masks/c.png")
    for path in [*mine, other]:
        path.write_bytes(path.stem.encode())
    remote.upload_files(JOB, mine)
    base = f"/uploadtest/root/jobs/{JOB}/predictions/masks"
    assert sorted(fs.find(base)) == [f"{base}/a.png", f"{base}/sub/b.png"]
    assert fs.cat(f"{base}/sub/b.png") == b"b"
    ArtifactStore(tmp_path / "local").upload_files(JOB, [])  # a local root: nothing to upload
