"""Per-image uncertainty: each measure orders confident < unsure, and adapters put it on predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segpipe.models.tasks import get_adapter
from segpipe.models.uncertainty import margin_uncertainty, score_entropy, sigmoid_entropy, softmax_entropy


def test_margin_is_zero_when_sure_and_one_on_an_even_split() -> None:
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]])
    assert margin_uncertainty(probs).tolist() == pytest.approx([0.0, 1.0, 0.7])


def test_softmax_entropy_is_normalised_by_log_k() -> None:
    flat = torch.zeros(1, 4, 3, 3)  # uniform over 4 classes everywhere: maximal
    sure = torch.zeros(1, 4, 3, 3)
    sure[:, 2] = 50.0
    assert softmax_entropy(flat).item() == pytest.approx(1.0)
    assert softmax_entropy(sure).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.cat([flat, sure], dim=3)  # half the pixels uniform, half certain
    assert softmax_entropy(half).item() == pytest.approx(0.5, abs=1e-6)


def test_sigmoid_entropy_matches_the_formula() -> None:
    logits = torch.tensor([[0.0, 2.0, -3.0]])
    p = torch.sigmoid(logits)
    expected = (-(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)).mean()
    assert sigmoid_entropy(logits).item() == pytest.approx(expected.item(), rel=1e-5)
    assert sigmoid_entropy(torch.full((1, 5), 40.0)).item() == pytest.approx(0.0, abs=1e-6)


def test_score_entropy_takes_the_least_sure_object() -> None:
    assert score_entropy([]) == 0.0
    assert score_entropy([0.99, 0.5]) == pytest.approx(1.0)
    assert score_entropy([0.99, 0.9]) == pytest.approx(score_entropy([0.9]))
    assert score_entropy([0.99]) < score_entropy([0.7]) < score_entropy([0.55])


def test_classification_adapter_puts_the_margin_on_each_prediction() -> None:
    adapter = get_adapter("classification", num_labels=3)
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, -5.0]])
    batch = {"images": torch.zeros(2, 3, 8, 8), "image_ids": [1, 2], "meta": [{}, {}]}
    sure, unsure = adapter.decode(logits, batch)
    assert sure.uncertainty == pytest.approx(0.0, abs=1e-3)
    assert unsure.uncertainty == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("task,channels", [("semantic", 3), ("binary", 1)])
def test_segmentation_adapters_put_the_mean_entropy_on_each_prediction(task: str, channels: int) -> None:
    adapter = get_adapter(task, num_labels=3 if task == "semantic" else 2)
    logits = torch.zeros(2, channels, 4, 4)  # image 0: undecided everywhere
    logits[1] = 30.0 if channels == 1 else torch.tensor([30.0, 0.0, 0.0]).view(3, 1, 1)  # image 1: sure
    batch = {"images": torch.zeros(2, 3, 4, 4), "image_ids": ["a", "b"], "meta": [{}, {}]}
    undecided, sure = adapter.decode(logits, batch)
    assert undecided.uncertainty == pytest.approx(1.0, abs=1e-5)
    assert sure.uncertainty == pytest.approx(0.0, abs=1e-5)
    assert isinstance(undecided.label_map, np.ndarray)
