"""torch's CPU thread count: ``train.threads``, else ``OMP_NUM_THREADS``, else the cores this process may use."""

from __future__ import annotations

import os

import pytest
import torch

from segpipe.config import TrainConfig
from segpipe.engine.threads import available_cores, configure_threads, default_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_available_cores_follow_the_affinity_mask() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() == available_cores()
    assert configure_threads() == available_cores() == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads() == 1 == torch.get_num_threads()
    assert configure_threads(TrainConfig(threads=3).threads) == 3 == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert default_threads() == available_cores()


def test_threads_setting_is_validated() -> None:
    assert TrainConfig().threads is None
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=0)
