"""A small explicit registry: the one front door for each extension point (models, presets, ...).

Configs name entries by string; an unknown name fails with the list of known ones. There are no
dotted-path imports from configs: only what the code registered can be built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from segpipe.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)


class Registry(Generic[T]):
    """Name → object, with descriptions and tags (e.g. the task kinds a model supports)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str = "", tags: tuple[str, ...] | frozenset[str] = ()
    ) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("unet", description=..., tags=("semantic",))``."""

        def add(obj: T) -> T:
            self.add(name, obj, description=description, tags=tags)
            return obj

        return add

    def add(
        self, name: str, obj: T, *, description: str = "", tags: tuple[str, ...] | frozenset[str] = ()
    ) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, description, frozenset(tags))

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None

    def names(self, tag: str | None = None) -> list[str]:
        return sorted(n for n, e in self._entries.items() if tag is None or tag in e.tags)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
