from __future__ import annotations

from segpipe.settings import Settings
from segpipe.stores import ClaimOutcome, Stores


def test_stores_from_settings_default_to_files_under_home(tmp_path):
    stores = Stores.from_settings(Settings(home=tmp_path / "home"))
    try:
        assert (tmp_path / "home" / "segpipe.db").is_file()
        assert stores.artifacts.root == (tmp_path / "home" / "artifacts").resolve()
        job = stores.jobs.create("predict", "cfg", queue="gpu")
        assert stores.jobs.claim(job.id, "w", 30).outcome is ClaimOutcome.CLAIMED
        assert stores.predictions.write_image(job.id, "a.png", [], height=4, width=4)
        stores.artifacts.path_for(job.id, "results.json").write_text("[]")
        stores.artifacts.register(job.id, "coco", "results.json")
        assert stores.jobs.finish(job.id, "w", "succeeded")
        assert stores.jobs.get(job.id).artifacts == {"coco": "results.json"}
        assert stores.versions.register("m", "instance", "cfg", job_id=job.id).version == 1
    finally:
        stores.close()
    # Reopening an existing database migrates nothing and sees the same rows.
    again = Stores.from_settings(Settings(home=tmp_path / "home"))
    try:
        assert again.jobs.list()[1] == 1 and again.predictions.done_images(job.id) == {"a.png"}
    finally:
        again.close()
