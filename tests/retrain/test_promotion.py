from __future__ import annotations

import pytest

from segpipe.errors import ConfigError, NotFoundError
from segpipe.retrain.promotion import promote_by_hand, rollback


def stages(stores) -> dict[int, str]:
    return {v.version: v.stage for v in stores.versions.list("roads")}


def test_promote_by_hand_and_roll_back(stores):
    for _ in range(3):
        stores.versions.register("roads", "binary", "cfg")
    d1 = promote_by_hand(stores, "roads", 1, by="cli")
    assert (d1.outcome, d1.source, d1.reason) == (
        "promoted", "manual", "promoted by hand by cli, replacing no production version")
    promote_by_hand(stores, "roads", 3)
    assert stages(stores) == {1: "archived", 2: "candidate", 3: "production"}
    again = promote_by_hand(stores, "roads", 3)
    assert again.reason == "promoted by hand (it was already production)"

    back = rollback(stores, "roads", by="api:alice")
    assert (back.version, back.previous_version, back.source) == (1, 3, "rollback")
    assert back.reason == "rolled back by api:alice from version 3 to version 1"
    assert stages(stores) == {1: "production", 2: "candidate", 3: "archived"}
    with pytest.raises(ConfigError, match="no version before 1 was ever production; pick one with --to VERSION"):
        rollback(stores, "roads")
    assert rollback(stores, "roads", to=2).version == 2  # any version, by number
    assert stages(stores) == {1: "archived", 2: "production", 3: "archived"}
    assert [d.source for d in stores.decisions.list("roads")] == ["rollback", "rollback", "manual", "manual", "manual"]


def test_rollback_errors(stores):
    with pytest.raises(NotFoundError, match="model 'roads' has no versions"):
        rollback(stores, "roads")
    stores.versions.register("roads", "binary", "cfg")
    with pytest.raises(ConfigError, match="has no production version to roll back from"):
        rollback(stores, "roads")
    promote_by_hand(stores, "roads", 1)
    with pytest.raises(ConfigError, match="version 1 is production already"):
        rollback(stores, "roads", to=1)
    with pytest.raises(NotFoundError, match="model 'roads' has no version 5"):
        rollback(stores, "roads", to=5)
    with pytest.raises(NotFoundError, match="model 'roads' has no version 5"):
        promote_by_hand(stores, "roads", 5)
