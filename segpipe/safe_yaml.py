"""Untrusted YAML and JSON documents: no aliases (or bounded ones), bounded depth and size *after* parsing.

A 674-byte YAML file whose anchors refer to anchors nine levels deep ("billion laughs") expands to
billions of nodes when it is turned into Python objects, so a limit on the input's bytes protects
nothing. `load` refuses aliases while composing (before anything expands), and `check_structure`
bounds what a parsed document may hold, whatever it came from (YAML, a JSON request body, overrides).
"""

from __future__ import annotations

from typing import Any

import yaml

from segpipe.errors import ConfigError

MAX_DEPTH = 32  # a job config is ~4 levels deep; an albumentations pipeline adds a few more
MAX_NODES = 100_000  # containers + scalars, counted over the whole document
MAX_SCALAR_CHARS = 64 * 1024  # one string


class DocumentTooLarge(ConfigError):
    """A document over the depth, node or size limits (answered 413 by the API)."""


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no python/* tags) that refuses aliases (``*name``) outright."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # PyYAML's own signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise ConfigError(
                f"YAML alias *{event.anchor} at line {mark.line + 1}, column {mark.column + 1}: aliases are not "
                "allowed in job configs (write the value out)"
            )
        return super().compose_node(parent, index)


def load(text: str, *, source: str = "<config>", aliases: bool = False) -> Any:  # any YAML
    """Parse YAML `text` safely: no tags that build Python objects, bounded structure.

    Aliases are refused unless `aliases` (files an operator wrote, text segpipe stored earlier): PyYAML
    then shares the aliased objects, and `check_structure` counts every use, so expansion stays bounded.
    """
    try:
        value = yaml.load(text, Loader=yaml.SafeLoader if aliases else _NoAliasLoader)  # noqa: S506 - safe loaders
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(f"{source}: invalid YAML at {where}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    except RecursionError:
        raise DocumentTooLarge(f"{source}: YAML nested too deeply (more than {MAX_DEPTH} levels allowed)") from None
    check_structure(value, source=source)
    return value


def check_structure(
    value: Any,  # any parsed document
    *,
    source: str = "<config>",
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> None:
    """Raise `DocumentTooLarge` when `value` nests deeper than `max_depth`, holds more than `max_nodes`
    values, or a string longer than `MAX_SCALAR_CHARS`. Iterative: deep input cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise DocumentTooLarge(f"{source}: more than {max_nodes} values; a job config is far smaller")
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            if isinstance(item, (str, bytes)) and len(item) > MAX_SCALAR_CHARS:
                raise DocumentTooLarge(f"{source}: a value of {len(item)} characters (at most {MAX_SCALAR_CHARS})")
            continue
        if children and depth >= max_depth:
            raise DocumentTooLarge(f"{source}: nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value that appears twice in full, twice: what we store must load with `load`."""

    def ignore_aliases(self, data: Any) -> bool:  # PyYAML's own signature
        return True


def dump(value: Any) -> str:  # any plain data
    """YAML text of plain data (keys in insertion order), never with anchors or aliases."""
    return yaml.dump(value, Dumper=_NoAliasDumper, sort_keys=False)
