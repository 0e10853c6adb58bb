"""One registry type for everything llmtrunc looks up by name (models, tasks, architectures, report builders).

As lm-eval's `api/registry.py`: a name maps to one object, registering a name twice is a bug, and
looking up an unknown name is the user's mistake, answered in one line that lists the known names. An object
may be registered as a lazy target, "module:attribute", imported on its first lookup: so a core module can
name a track's code without importing it (tests/test_layering.py).
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from llmtrunc.errors import LLMTruncError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "model", "task", ... (used in messages)
        self._items: dict[str, T] = {}
        self._targets: dict[str, str] = {}  # lazy entries not yet imported: name -> "module:attribute"

    def register(self, name: str, item: T) -> T:
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register_lazy(self, name: str, target: str) -> None:
        """Register the object `target` ("module:attribute") names, imported when `name` is first looked up."""
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"a lazy {self.what} target is 'module:attribute', not {target!r}")
        self._targets[name] = target
        self._items[name] = None  # keeps the registration order

    def get(self, name: str) -> T:
        if name not in self:
            raise LLMTruncError(f"unknown {self.what} {name!r}: choose one of {', '.join(self._items)}")
        return self._resolved(name)

    def find(self, name: str) -> T | None:
        return self._resolved(name) if name in self else None

    def _resolved(self, name: str) -> T:
        if name in self._targets:
            module, _, attribute = self._targets.pop(name).partition(":")
            self._items[name] = getattr(importlib.import_module(module), attribute)
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return [(name, self._resolved(name)) for name in self._items]

    def values(self):
        return [self._resolved(name) for name in self._items]
