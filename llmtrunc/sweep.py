"""Sweeps: the grid models x drops (x seeds, x K) x positions x tasks, run as resumable cells.

Cells are enumerated in one canonical order (model, task, drop, position) and a shard takes a
contiguous block of them, so cells that share a model and task (and thus the shared-body cache)
mostly stay together. Completed cells are in the results store and are skipped; each cell is
written atomically, so a killed sweep loses at most the cell in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from llmtrunc.errors import LLMTruncError
from llmtrunc.evaluate import Cell
from llmtrunc.spec import DropSpec, parse_drops

BARE_KINDS = ("first", "last", "random")


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

    def drop_specs(self) -> list[DropSpec]:
        """Drops expanded over the K grid (bare first/last/random) and the seeds (random)."""
        texts = []
        for text in (t.strip() for item in self.drops for t in str(item).split(",") if t.strip()):
            if text in BARE_KINDS:
                if not self.k:
                    raise LLMTruncError(f"drop {text!r} needs a K grid (--k 10%,50%,90%)")
                texts += [f"{text}:{k}" for k in self.k]
            else:
                texts.append(text)
        return [DropSpec("none"), *(s for s in parse_drops(texts, seeds=self.seeds) if s.kind != "none")]


def grid(config: SweepConfig, task_refs: list) -> list[tuple[str, Cell]]:
    """(model, cell) for the whole grid; `none` runs once per model and task (its position is moot)."""
    cells = []
    for model in config.models:
        for task in task_refs:
            for spec in config.drop_specs():
                for at in config.positions[:1] if spec.kind == "none" else config.positions:
                    cells.append((model, Cell(task, spec, at)))
    return cells


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 1, 1
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise LLMTruncError(f"--shard must look like i/n (1-based), got {text!r}") from None
    if not 1 <= index <= total:
        raise LLMTruncError(f"--shard {text}: need 1 <= i <= n")
    return index, total


def shard(cells: list, index: int, total: int) -> list:
    """The index-th (1-based) of `total` contiguous, near-equal blocks of cells."""
    size, extra = divmod(len(cells), total)
    start = (index - 1) * size + min(index - 1, extra)
    return cells[start: start + size + (1 if index <= extra else 0)]
