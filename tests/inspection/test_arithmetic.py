"""Output-size arithmetic against what PyTorch's layers really output."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segpipe.inspection.arithmetic import SizeRule, expected_size, explain_size, size_rules


@settings(max_examples=80, deadline=None)
@given(
    w=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3),
    transposed=st.booleans(),
)
def test_conv_sizes_match_torch(w: int, k: int, s: int, p: int, d: int, transposed: bool) -> None:
    if transposed:
        layer: nn.Module = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, dilation=d)
    else:
        layer = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    rule = size_rules(layer, (w, w))[0]
    try:
        real = layer(torch.zeros(1, 1, w, w)).shape[-1]
    except RuntimeError:  # torch refuses: the kernel is larger than the padded input
        assert expected_size(w, rule) < 1
        return
    assert expected_size(w, rule) == real
    assert explain_size(w, rule).endswith(f"= {real}")


@settings(max_examples=80, deadline=None)
@given(w=st.integers(1, 40), k=st.integers(1, 5), s=st.integers(1, 4), data=st.data(), ceil=st.booleans(),
       avg=st.booleans())
def test_pool_sizes_match_torch(w: int, k: int, s: int, data: st.DataObject, ceil: bool, avg: bool) -> None:
    p = data.draw(st.integers(0, k // 2))  # torch: padding at most half the kernel
    layer = (nn.AvgPool2d if avg else nn.MaxPool2d)(k, stride=s, padding=p, ceil_mode=ceil)
    rule = size_rules(layer, (w, w))[0]
    try:
        real = layer(torch.zeros(1, 1, w, w)).shape[-1]
    except RuntimeError:
        assert expected_size(w, rule) < 1
        return
    assert expected_size(w, rule) == real


def test_same_padding_and_rectangular_kernels() -> None:
    conv = nn.Conv2d(1, 1, (5, 3), padding="same", dilation=(1, 2))
    h_rule, w_rule = size_rules(conv, (20, 30))
    assert (h_rule.pad_total, w_rule.pad_total) == (4, 4)
    assert (expected_size(20, h_rule), expected_size(30, w_rule)) == tuple(conv(torch.zeros(1, 1, 20, 30)).shape[-2:])


@pytest.mark.parametrize(
    ("size_in", "rule", "text"),
    [
        (32, SizeRule(3, 1, 2), "(32 − 3 + 2·1)/1 + 1 = 32"),
        (64, SizeRule(7, 2, 6), "⌊(64 − 7 + 2·3)/2⌋ + 1 = 32"),
        (7, SizeRule(2, 2, 0, ceil_mode=True), "⌈(7 − 2 + 2·0)/2⌉ + 1 = 4"),
        (32, SizeRule(3, 1, 4, dilation=2), "(32 − 5 + 2·2)/1 + 1 = 32"),  # dilated kernel: 2·(3 − 1) + 1
        (16, SizeRule(4, 2, 2, transposed=True), "(16 − 1)·2 − 2·1 + 4 = 32"),
    ],
)
def test_explanations_read_as_the_formula(size_in: int, rule: SizeRule, text: str) -> None:
    assert explain_size(size_in, rule) == text


def test_ceil_mode_drops_a_window_starting_in_the_padding() -> None:
    pool = nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True)
    rule = size_rules(pool, (5, 5))[0]
    real = pool(torch.zeros(1, 1, 5, 5)).shape[-1]
    assert expected_size(5, rule) == real == 3
    assert explain_size(5, rule) == "⌈(5 − 2 + 2·1)/2⌉ + 1 − 1 (last window starts in the padding) = 3"


def test_layers_without_arithmetic() -> None:
    assert size_rules(nn.ReLU(), (8, 8)) is None
    assert size_rules(nn.AdaptiveAvgPool2d(4), (8, 8)) is None
