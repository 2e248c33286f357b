from __future__ import annotations

import pytest

from segpipe.errors import ConfigError, NotFoundError
from segpipe.stores.db import Store
from segpipe.stores.decisions import DecisionStore
from segpipe.stores.versions import ModelVersionStore
from tests.stores.test_versions import _threads


@pytest.fixture
def versions(store: Store, clock) -> ModelVersionStore:
    return ModelVersionStore(store, now=clock)


@pytest.fixture
def decisions(store: Store, clock) -> DecisionStore:
    return DecisionStore(store, now=clock)


def _stages(versions: ModelVersionStore, name: str = "roads") -> dict[int, str]:
    return {v.version: v.stage for v in versions.list(name)}


def test_a_promoted_decision_promotes_in_the_same_transaction(versions, decisions, jobs, clock):
    job = jobs.create("retrain", "spec", queue="gpu")
    for _ in range(2):
        versions.register("roads", "binary", "cfg")
    first = decisions.record("roads", 1, "promoted", "first version", source="gate", job_id=job.id,
                             candidate_metrics={"iou": 0.5}, expect_production=None, check_production=True)
    assert (first.previous_version, first.created_at, first.job_id) == (None, clock.now, job.id)
    assert _stages(versions) == {1: "production", 2: "candidate"}
    checks = [{"metric": "iou", "role": "primary", "passed": True}]
    second = decisions.record("roads", 2, "promoted", "better", source="gate", metric="iou", checks=checks,
                              candidate_metrics={"iou": 0.7}, production_metrics={"iou": 0.5},
                              expect_production=1, check_production=True)
    assert second.previous_version == 1 and second.checks == checks
    assert _stages(versions) == {1: "archived", 2: "production"}
    got = decisions.for_version("roads", 2, source="gate")
    assert got is not None and got.production_metrics == {"iou": 0.5} and got.metric == "iou"
    assert [d.version for d in decisions.list("roads")] == [2, 1]  # newest first
    assert decisions.for_version("roads", 2, source="manual") is None


def test_a_rejected_decision_changes_no_stage(versions, decisions):
    versions.register("roads", "binary", "cfg")
    versions.register("roads", "binary", "cfg")
    versions.promote("roads", 1)
    d = decisions.record("roads", 2, "rejected", "iou fell", source="gate")
    assert d.outcome == "rejected" and d.previous_version == 1
    assert _stages(versions) == {1: "production", 2: "candidate"}


def test_promotion_is_refused_when_production_moved_meanwhile(versions, decisions):
    for _ in range(3):
        versions.register("roads", "binary", "cfg")
    versions.promote("roads", 1)
    versions.promote("roads", 2)  # by hand, while version 3 was being evaluated against version 1
    d = decisions.record("roads", 3, "promoted", "iou +0.1", source="gate", expect_production=1, check_production=True)
    assert d.outcome == "rejected" and d.previous_version == 2
    assert d.reason.startswith("production changed from version 1 to version 2 in the meantime")
    assert "iou +0.1" in d.reason
    assert _stages(versions) == {1: "archived", 2: "production", 3: "candidate"}


def test_concurrent_gates_promote_at_most_one_candidate(versions, decisions):
    """Two candidates evaluated against the same production: the compare-and-set lets one win."""
    for _ in range(5):
        versions.register("roads", "binary", "cfg")
    versions.promote("roads", 1)
    _threads(lambda v: decisions.record("roads", v, "promoted", "better", source="gate",
                                        expect_production=1, check_production=True), [(v,) for v in (2, 3, 4, 5)])
    outcomes = sorted(d.outcome for d in decisions.list("roads"))
    assert outcomes == ["promoted", "rejected", "rejected", "rejected"]
    assert list(_stages(versions).values()).count("production") == 1


def test_bad_input_is_refused(versions, decisions):
    versions.register("roads", "binary", "cfg")
    with pytest.raises(NotFoundError, match="model 'roads' has no version 7"):
        decisions.record("roads", 7, "promoted", "x", source="manual")
    with pytest.raises(ConfigError, match="unknown decision outcome 'maybe'"):
        decisions.record("roads", 1, "maybe", "x", source="manual")
    with pytest.raises(ConfigError, match="unknown decision source 'robot'"):
        decisions.record("roads", 1, "promoted", "x", source="robot")
    assert decisions.list() == []


def test_rollback_target_walks_back_through_former_production_versions(versions, decisions):
    for _ in range(4):
        versions.register("roads", "binary", "cfg")
    assert decisions.rollback_target("roads") is None  # no production yet
    decisions.record("roads", 1, "promoted", "first", source="gate")
    assert decisions.rollback_target("roads") is None  # nothing earlier
    decisions.record("roads", 2, "rejected", "worse", source="gate")
    decisions.record("roads", 3, "promoted", "better", source="gate")
    assert decisions.rollback_target("roads") == 1  # 2 was never production
    decisions.record("roads", 4, "promoted", "better", source="gate")
    assert decisions.rollback_target("roads") == 3
    decisions.record("roads", 3, "promoted", "rolled back", source="rollback")
    assert decisions.rollback_target("roads") == 1  # again: further back
    assert decisions.rollback_target("nothing") is None
