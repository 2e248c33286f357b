"""Output-size arithmetic of conv and pool layers, written out with the numbers filled in.

For one spatial dimension of size W, kernel K, stride S, padding P (each side), dilation D:

- convolution / pooling:  O = ⌊(W − K′ + 2P)/S⌋ + 1, with K′ = D·(K − 1) + 1 the dilated kernel;
  pools with ``ceil_mode`` round up instead, and drop a last window that would start inside the
  right padding (PyTorch's rule);
- transposed convolution: O = (W − 1)·S − 2P + K′ + output_padding.

``explain_size`` renders one dimension as text, e.g. ``(32 − 3 + 2·1)/1 + 1 = 32``; ``size_rule``
reads the hyperparameters off a module (None for a layer without this arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class SizeRule:
    """The hyperparameters that decide one spatial output dimension of a layer.

    ``pad_total`` is the padding added to both sides together (2P for symmetric padding; Conv2d's
    ``padding='same'`` pads D·(K − 1) in total, possibly one more on the right).
    """

    kernel: int
    stride: int
    pad_total: int
    dilation: int = 1
    ceil_mode: bool = False
    transposed: bool = False
    output_padding: int = 0

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel - 1) + 1


def expected_size(size_in: int, rule: SizeRule) -> int:
    """Output length of one spatial dimension of length `size_in` under `rule`."""
    k = rule.effective_kernel
    if rule.transposed:
        return (size_in - 1) * rule.stride - rule.pad_total + k + rule.output_padding
    span = size_in - k + rule.pad_total
    if not rule.ceil_mode:
        return span // rule.stride + 1
    out = -(-span // rule.stride) + 1
    if (out - 1) * rule.stride >= size_in + rule.pad_total // 2:
        out -= 1  # the last window would start in the right padding: PyTorch drops it
    return out


def explain_size(size_in: int, rule: SizeRule) -> str:
    """The formula of `expected_size` with the numbers in, ending in ``= O``."""
    out = expected_size(size_in, rule)
    k = rule.effective_kernel
    pad = _pad_term(rule.pad_total)
    if rule.transposed:
        extra = f" + {rule.output_padding}" if rule.output_padding else ""
        return f"({size_in} − 1)·{rule.stride} − {pad} + {k}{extra} = {out}"
    span = size_in - k + rule.pad_total
    fraction = f"({size_in} − {k} + {pad})/{rule.stride}"
    if span % rule.stride:
        fraction = f"⌈{fraction}⌉" if rule.ceil_mode else f"⌊{fraction}⌋"
    text = f"{fraction} + 1"
    if rule.ceil_mode and out != -(-span // rule.stride) + 1:
        text += " − 1 (last window starts in the padding)"
    return f"{text} = {out}"


def _pad_term(total: int) -> str:
    return f"2·{total // 2}" if total % 2 == 0 else str(total)


def size_rules(module: nn.Module, in_size: tuple[int, int]) -> tuple[SizeRule, SizeRule] | None:
    """(rule for H, rule for W) of a Conv2d, ConvTranspose2d, MaxPool2d or AvgPool2d; None otherwise.

    `in_size` (H, W) is only needed to resolve Conv2d's ``padding='same'``; it does not change the rule.
    """
    if isinstance(module, nn.ConvTranspose2d):
        return tuple(  # type: ignore[return-value]
            SizeRule(
                kernel=module.kernel_size[i],
                stride=module.stride[i],
                pad_total=2 * int(module.padding[i]),  # a transposed conv's padding is numbers, never 'same'
                dilation=module.dilation[i],
                transposed=True,
                output_padding=module.output_padding[i],
            )
            for i in range(2)
        )
    if isinstance(module, nn.Conv2d):
        return tuple(  # type: ignore[return-value]
            SizeRule(
                kernel=module.kernel_size[i],
                stride=module.stride[i],
                pad_total=_conv_pad_total(module, i),
                dilation=module.dilation[i],
            )
            for i in range(2)
        )
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, padding = (_pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                                   _pair(module.padding))
        dilation = _pair(module.dilation) if isinstance(module, nn.MaxPool2d) else (1, 1)
        return tuple(  # type: ignore[return-value]
            SizeRule(kernel=kernel[i], stride=stride[i], pad_total=2 * padding[i], dilation=dilation[i],
                     ceil_mode=module.ceil_mode)
            for i in range(2)
        )
    return None


def _conv_pad_total(conv: nn.Conv2d, dim: int) -> int:
    if conv.padding == "valid":
        return 0
    if conv.padding == "same":
        return conv.dilation[dim] * (conv.kernel_size[dim] - 1)
    return 2 * int(conv.padding[dim])


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[-1])


def explain_layer(rules: tuple[SizeRule, SizeRule], in_size: tuple[int, int]) -> tuple[str, tuple[int, int]]:
    """(text, expected (H, W)) for a 2-D layer; one formula when H and W read the same."""
    h_text, w_text = explain_size(in_size[0], rules[0]), explain_size(in_size[1], rules[1])
    expected = (expected_size(in_size[0], rules[0]), expected_size(in_size[1], rules[1]))
    text = h_text if h_text == w_text else f"H: {h_text}; W: {w_text}"
    return text, expected
