"""Sweep configs: the grid models x drops (x seeds, x K) x positions x tasks, from flags or a YAML file.

The grid is expanded by `llmtrunc.spec.expand_grid` (drops) and `llmtrunc.llm.evaluate.llm_cells`
(cells), and run by the one runner (llmtrunc.runner), like every other command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from llmtrunc.errors import LLMTruncError


@dataclass
class SweepConfig:
    models: list[str]
    tasks: list[str]
    drops: list[str] = field(default_factory=lambda: ["first-half", "last-half"])
    seeds: list[int] | None = None
    k: list[str] | None = None
    positions: list[str] = field(default_factory=lambda: ["post-norm"])

    @classmethod
    def from_yaml(cls, path: str) -> SweepConfig:
        try:
            with open(path) as handle:
                data = yaml.safe_load(handle) or {}
        except OSError as exc:
            raise LLMTruncError(f"cannot read sweep config {path}: {exc.strerror}") from None
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise LLMTruncError(f"unknown keys in sweep config {path}: {', '.join(sorted(unknown))}")
        as_list = lambda v: v if isinstance(v, list) or v is None else [v]  # noqa: E731
        return cls(**{key: as_list(value) for key, value in data.items()})
