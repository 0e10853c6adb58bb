"""One registry type for everything llmtrunc looks up by name (models, tasks, architectures).

As lm-eval's `api/registry.py`: a name maps to one object, registering a name twice is a bug, and
looking up an unknown name is the user's mistake, answered in one line that lists the known names.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from llmtrunc.errors import LLMTruncError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "model", "task", ... (used in messages)
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise LLMTruncError(f"unknown {self.what} {name!r}: choose one of {', '.join(self._items)}") from None

    def find(self, name: str) -> T | None:
        return self._items.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return self._items.items()

    def values(self):
        return self._items.values()
