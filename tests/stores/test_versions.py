from __future__ import annotations

import threading

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store
from segpipe.stores.models import ModelVersion
from segpipe.stores.versions import ModelVersionStore


@pytest.fixture
def versions(store: Store, clock) -> ModelVersionStore:
    return ModelVersionStore(store, now=clock)


def _threads(target, args_list) -> None:
    barrier = threading.Barrier(len(args_list))
    errors: list[BaseException] = []

    def run(*args) -> None:
        barrier.wait()
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which fails the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_register_numbers_versions_per_name(versions, jobs, clock):
    job = jobs.create("train", "cfg", queue="gpu")
    v1 = versions.register(
        "roads",
        "semantic",
        "task: semantic\n",
        checkpoint="jobs/a/best.pt",
        metrics={"miou": 0.61},
        dataset_hash="abc",
        job_id=job.id,
    )
    v2 = versions.register("roads", "semantic", "cfg2", parent_version=1)
    other = versions.register("cells", "instance", "cfg")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    got = versions.get("roads", 1)
    assert got.stage == "candidate" and got.metrics == {"miou": 0.61} and got.dataset_hash == "abc"
    assert got.job_id == job.id and got.checkpoint == "jobs/a/best.pt" and got.created_at == clock.now
    assert versions.get("roads", 2).parent_version == 1
    assert versions.latest("roads").version == 2 and versions.latest("nothing") is None
    assert [(v.name, v.version) for v in versions.list()] == [("cells", 1), ("roads", 2), ("roads", 1)]
    with pytest.raises(NotFoundError, match="model 'roads' has no version 3"):
        versions.get("roads", 3)
    with pytest.raises(NotFoundError, match="job nope does not exist"):
        versions.register("roads", "semantic", "cfg", job_id="nope")
    with pytest.raises(ConfigError, match="unknown model stage 'live'"):
        versions.list(stage="live")


def test_concurrent_registrations_get_distinct_numbers(versions):
    _threads(lambda i: versions.register("race", "binary", f"cfg {i}"), [(i,) for i in range(5)])
    assert sorted(v.version for v in versions.list("race")) == [1, 2, 3, 4, 5]


def test_promote_archives_the_previous_production_version(versions):
    for _ in range(3):
        versions.register("roads", "semantic", "cfg")
    assert versions.production("roads") is None
    assert versions.promote("roads", 1).stage == "production"
    promoted = versions.promote("roads", 3)
    assert promoted.stage == "production" and promoted.version == 3
    assert versions.production("roads").version == 3
    assert {v.version: v.stage for v in versions.list("roads")} == {1: "archived", 2: "candidate", 3: "production"}
    assert [v.version for v in versions.list(stage="archived")] == [1]
    # Promoting again is harmless; rolling back to an archived version works the same way.
    assert versions.promote("roads", 3).stage == "production"
    versions.promote("roads", 1)
    assert {v.version: v.stage for v in versions.list("roads")} == {1: "production", 2: "candidate", 3: "archived"}
    assert versions.archive("roads", 2).stage == "archived"
    with pytest.raises(NotFoundError):
        versions.promote("roads", 9)
    with pytest.raises(NotFoundError):
        versions.archive("roads", 9)
    assert versions.production("roads").version == 1  # a failed promote changed nothing


def test_the_database_allows_one_production_version_per_name(versions, store):
    versions.register("roads", "semantic", "cfg")
    versions.register("roads", "semantic", "cfg")
    versions.register("cells", "instance", "cfg")
    versions.promote("roads", 1)
    versions.promote("cells", 1)  # another name: independent
    with pytest.raises(IntegrityError), store.write() as session:
        second = update(ModelVersion).where(ModelVersion.name == "roads", ModelVersion.version == 2)
        session.execute(second.values(stage="production"))


def test_concurrent_promotions_leave_exactly_one_production(versions):
    for _ in range(4):
        versions.register("roads", "semantic", "cfg")
    versions.promote("roads", 1)
    _threads(versions.promote, [("roads", v) for v in (2, 3, 4)])
    stages = [v.stage for v in versions.list("roads")]
    assert stages.count("production") == 1 and stages.count("archived") == 3


def test_versions_by_job_and_by_dataset_hash(versions, jobs):
    job = jobs.create("train", "cfg", queue="gpu")
    assert versions.for_job(job.id) is None
    versions.register("roads", "semantic", "cfg", dataset_hash="sha256:a")
    made = versions.register("roads", "semantic", "cfg", dataset_hash="sha256:b", job_id=job.id)
    versions.register("roads", "semantic", "cfg", dataset_hash="sha256:a")
    assert versions.for_job(job.id).version == made.version == 2
    # the job row says which version it made
    assert (jobs.get(job.id).model_name, jobs.get(job.id).model_version) == ("roads", 2)
    assert versions.trained_on("roads", "sha256:a").version == 3  # the newest one
    assert versions.trained_on("roads", "sha256:c") is None
    assert versions.trained_on("cells", "sha256:a") is None
