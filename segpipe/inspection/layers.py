"""The layer table: one forward pass with hooks, one row per layer call, in the order they run.

Rows are the leaf modules of the inspected scope (see ``scope.py``), or — with ``depth=d`` — the
modules ``d`` levels down, collapsed with all their parameters (``depth=1``: ``features``,
``classifier``); a container the model never calls as a whole (a ModuleList it loops over) is
replaced by its children. ``nn.Identity`` layers are left out (they do nothing). A module that runs twice (the
ReLU a torchvision ResNet block calls after both convs) gives two rows; its parameters count on the
first. Conv and pool rows carry their output-size arithmetic, checked against the real output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from segpipe.errors import ConfigError
from segpipe.inspection.arithmetic import explain_layer, size_rules
from segpipe.inspection.scope import (
    evaluating,
    full_name,
    hooked,
    model_device,
    run_forward,
    scope_module,
    scope_prefix,
)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One call of one layer.

    name:    dotted module name inside the whole model (what ``--layers`` takes).
    kind:    the module's class name (Conv2d, BatchNorm2d, ...).
    input_shape / output_shape: B×C×H×W (or B×F) of the first input / the output when it is a single
             tensor; otherwise None and ``output_note`` describes the output ("4 tensors", ...).
    kernel, stride, dilation: (H, W) for conv and pool layers, else None; padding: (H, W) or 'same' /
             'valid'.
    arithmetic: the output-size formula with the numbers in, e.g. "(32 − 3 + 2·1)/1 + 1 = 32";
             expected: (H, W) it gives; matches: whether that is the real output size.
    params / trainable: parameters counted on this row (0 when the layer ran before, or holds none).
    call:    1 for a layer's first call, 2.. for repeated calls.
    """

    index: int
    name: str
    kind: str
    input_shape: Shape | None
    output_shape: Shape | None
    output_note: str
    params: int
    trainable: int
    call: int = 1
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | str | None = None
    dilation: tuple[int, int] | None = None
    arithmetic: str | None = None
    expected: tuple[int, int] | None = None
    matches: bool | None = None

    @property
    def output_text(self) -> str:
        return format_shape(self.output_shape) if self.output_shape is not None else self.output_note


@dataclass
class LayerTable:
    """The rows plus totals.

    total_params / trainable_params: unique parameters of the inspected scope (shared weights once).
    model_params: unique parameters of the whole model (differs from total for detectors, whose
    table covers the backbone only). unlisted: parameters on no row, by the module holding them — a
    module that never ran in the forward pass, or a container holding parameters next to its children.
    """

    rows: list[LayerRow]
    input_shape: Shape
    scope: str
    total_params: int
    trainable_params: int
    model_params: int
    unlisted: dict[str, int] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[LayerRow]:
        return [r for r in self.rows if r.matches is False]


def layer_table(model: nn.Module, input_shape: Sequence[int], depth: int | None = None) -> LayerTable:
    """Run one forward pass of `model` (its inspected scope) on a random float input of `input_shape`
    (B, C, H, W) in eval mode without grad, and report every layer call in order.

    Raises ConfigError for a bad shape or depth, or when the model cannot run on that input.
    """
    shape = _check_shape(input_shape)
    if depth is not None and depth < 1:
        raise ConfigError(f"depth must be at least 1, got {depth}")
    prefix, root = scope_prefix(model), scope_module(model)
    # Every module is hooked; which become rows is decided after the pass, because only then is it
    # known which containers were called (a ModuleList never is: its children are, one by one).
    calls: list[_Call] = []
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(model_device(model))
    with evaluating(model), hooked(dict(root.named_modules()), lambda *call: calls.append(_Call.of(*call))):
        run_forward(f"{type(model).__name__} on input {format_shape(shape)}", lambda: root(x))

    chosen = _row_names(root, {c.name for c in calls}, depth)
    counted: set[int] = set()  # ids of parameters already on a row
    times: dict[str, int] = {}
    rows: list[LayerRow] = []
    for call in (c for c in calls if c.name in chosen):
        times[call.name] = times.get(call.name, 0) + 1
        params, trainable = _count_new(call.module.parameters(), counted)
        rows.append(_row(len(rows), full_name(prefix, call.name) or "(model)", call, params, trainable,
                         times[call.name]))

    scope_params = _unique(root.parameters())
    unlisted: dict[str, int] = {}
    for name, module in root.named_modules():
        count, _ = _count_new(module.parameters(recurse=False), counted)
        if count:
            unlisted[full_name(prefix, name) or "(model)"] = count
    return LayerTable(
        rows=rows,
        input_shape=shape,
        scope=prefix,
        total_params=sum(p.numel() for p in scope_params),
        trainable_params=sum(p.numel() for p in scope_params if p.requires_grad),
        model_params=sum(p.numel() for p in _unique(model.parameters())),
        unlisted=unlisted,
    )


COLUMNS = ("#", "layer", "kind", "kernel", "stride", "pad", "output", "params", "O = (W − K + 2P)/S + 1")


def display_rows(table: LayerTable) -> list[tuple[str, ...]]:
    """The rows as text, one cell per ``COLUMNS`` entry (for a terminal table). The arithmetic cell
    ends in ✓ when it gives the real output size, else ✗ and the real size."""
    out: list[tuple[str, ...]] = []
    for r in table.rows:
        kernel = format_pair(r.kernel)
        if r.dilation is not None and r.dilation != (1, 1):
            kernel += f" dil {format_pair(r.dilation)}"
        arithmetic = r.arithmetic or ""
        if r.matches is not None:
            real = "×".join(str(s) for s in r.output_shape[-2:]) if r.output_shape else r.output_text
            arithmetic += " ✓" if r.matches else f" ✗ real {real}"
        out.append((
            str(r.index),
            r.name if r.call == 1 else f"{r.name} (again)",
            r.kind,
            kernel,
            format_pair(r.stride),
            format_pair(r.padding),
            r.output_text,
            f"{r.params:,}" if r.params else "",
            arithmetic,
        ))
    return out


def format_shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def format_pair(pair: tuple[int, int] | str | None) -> str:
    """(3, 3) → "3", (3, 1) → "3×1", 'same' → "same", None → ""."""
    if pair is None:
        return ""
    if isinstance(pair, str):
        return pair
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}×{pair[1]}"


# ------------------------------------------------------------------------------------------- internals


def _check_shape(input_shape: Sequence[int]) -> Shape:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"input shape must be 4 positive sizes (B, C, H, W), got {tuple(input_shape)}")
    return shape


@dataclass(frozen=True)
class _Call:
    """One module call as a hook saw it: shapes only, so no activation outlives the forward pass."""

    name: str  # inside the scope
    module: nn.Module
    input_shape: Shape | None
    output_shape: Shape | None
    output_note: str

    @classmethod
    def of(cls, name: str, module: nn.Module, inputs: tuple, output: Any) -> _Call:
        x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
        return cls(name, module, tuple(x.shape) if x is not None else None, *_describe(output))


def _row_names(root: nn.Module, called: set[str], depth: int | None) -> set[str]:
    """Scope names of the modules that become rows: called leaves, or called modules `depth` levels
    down; a container that was never called as a whole (ModuleList) gives its called children instead.
    No row lies inside another; ``nn.Identity`` gives none."""
    chosen: set[str] = set()

    def visit(name: str, module: nn.Module, level: int) -> None:
        if isinstance(module, nn.Identity):
            return
        children = list(module.named_children())
        if name in called and (not children or (depth is not None and level >= depth)):
            chosen.add(name)
            return
        for child_name, child in children:
            visit(f"{name}.{child_name}" if name else child_name, child, level + 1)

    for child_name, child in root.named_children():
        visit(child_name, child, 1)
    if not chosen and "" in called:  # the model is a single layer
        chosen.add("")
    return chosen


def _row(index: int, name: str, call: _Call, params: int, trainable: int, times: int) -> LayerRow:
    in_shape, out_shape = call.input_shape, call.output_shape
    extra: dict[str, Any] = {}
    rules = size_rules(call.module, in_shape[-2:]) if in_shape is not None and len(in_shape) == 4 else None
    if rules is not None and in_shape is not None:
        text, expected = explain_layer(rules, (in_shape[2], in_shape[3]))
        padding = getattr(call.module, "padding", None)
        extra = {
            "kernel": (rules[0].kernel, rules[1].kernel),
            "stride": (rules[0].stride, rules[1].stride),
            "padding": padding if isinstance(padding, str) else (rules[0].pad_total // 2, rules[1].pad_total // 2),
            "dilation": (rules[0].dilation, rules[1].dilation),
            "arithmetic": text,
            "expected": expected,
            "matches": out_shape is not None and tuple(out_shape[-2:]) == expected,
        }
    return LayerRow(index=index, name=name, kind=type(call.module).__name__, input_shape=in_shape,
                    output_shape=out_shape, output_note=call.output_note, params=params, trainable=trainable,
                    call=times, **extra)


def _describe(output: Any) -> tuple[Shape | None, str]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape), ""
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        shapes = [format_shape(t.shape) for t in output if isinstance(t, torch.Tensor)]
        return None, f"{len(output)} outputs: " + ", ".join(shapes) if shapes else f"{len(output)} outputs"
    return None, type(output).__name__


def _count_new(params: Any, counted: set[int]) -> tuple[int, int]:
    """(all, trainable) elements of `params` not counted yet; marks them counted."""
    total = trainable = 0
    for p in params:
        if id(p) in counted:
            continue
        counted.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def _unique(params: Any) -> list[nn.Parameter]:
    return list({id(p): p for p in params}.values())
