"""The one runner of every command: expand the grid -> skip cells already stored -> compute -> write.

`llmtrunc eval`, `sweep`, `encoder eval`, `encoder analyze` and `encoder train-simcse` all hand
the runner a list of `Cell`s and a compute function. Cells of one `group` (one model on one task)
are computed together -- an LLM loads once and shares its body, an encoder encodes once -- and
the compute function yields each finished cell, which the runner writes at once, atomically. A
killed run therefore loses only the cells in flight, and the next run skips what is stored.

Under data parallel (llmtrunc.parallel) every process runs the same cells in the same order and computes its
share of each; the runner applies the rank-0 rule: rank 0 decides what is pending, prints and writes, and
only rank 0's `run` returns the run ids (the others return none: rank 0 reports for all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator

from rich.console import Console

from llmtrunc.errors import LLMTruncError
from llmtrunc.parallel import Processes, lost_process, processes
from llmtrunc.record import Record, run_id
from llmtrunc.store import ResultsStore

Computed = tuple["Cell", list[Record], dict[str, Any]]  # a cell, its records, side files for its directory


@dataclass
class Cell:
    """One unit of work and of storage, named by its cell key (llmtrunc.record.cell_key)."""

    key: dict[str, Any]
    labels: tuple[str, ...]  # readable parts of the run id and of progress lines: model, task, drop, position
    group: Hashable  # cells of one group are computed together
    payload: Any = None  # what the compute function needs (task, spec, position ...)
    run_id: str = field(init=False)

    def __post_init__(self):
        self.run_id = run_id(self.key, *self.labels)

    @property
    def label(self) -> str:
        return " / ".join(p for p in self.labels if p)


class Runner:
    def __init__(self, store: ResultsStore, console: Console | None = None, recompute: bool = False,
                 team: Processes | None = None):
        self.store, self.recompute = store, recompute
        self.team = team or processes()
        self.console = console or Console(stderr=True)
        if not self.team.main:
            self.console = Console(stderr=True, quiet=True)
        self.computed = 0
        self.reused = 0

    def pending(self, cells: Iterable[Cell]) -> list[Cell]:
        """The cells the store lacks, as rank 0 sees the store (every process computes the same ones)."""
        mine = [c.run_id for c in cells if self.recompute or not self.store.has_run(c.run_id)] if self.team.main else None
        wanted = set(self.team.share(mine))
        return [c for c in cells if c.run_id in wanted]

    def run(self, cells: list[Cell], compute: Callable[[list[Cell]], Iterator[Computed]],
            check: Callable[[list[Cell]], None] | None = None) -> list[str]:
        """Compute every cell the store lacks, group by group; returns the run ids of all cells (on rank 0)."""
        if self.team.size > 1 and not getattr(compute, "data_parallel", False):
            raise LLMTruncError(f"this command runs in one process, not {self.team.size}: data parallel (torchrun, "
                                "accelerate launch) splits llmtrunc eval, sweep and attribute")
        todo = self.pending(cells)
        if check and todo:
            check(todo)  # refuse what cannot run before anything is computed
        groups: dict[Hashable, list[Cell]] = {}
        for cell in cells:
            groups.setdefault(cell.group, []).append(cell)
        total, done = len(todo), 0
        for members in groups.values():
            pending = self.pending(members)
            for cell in members:
                if cell not in pending:
                    self.console.print(f"[dim]reusing {cell.label}[/dim]")
                    self.reused += 1
            if not pending:
                continue
            with lost_process():
                for cell, records, files in compute(pending):
                    done += 1
                    self.computed += 1
                    if self.team.main:
                        self.store.write_run(cell.run_id, records, files)
                    self.console.print(f"[{done}/{total}] {cell.label}{progress(records)}")
        return [c.run_id for c in cells] if self.team.main else []

    def list(self, cells: list[Cell]) -> None:
        """`--dry-run`: every cell, done or pending, on standard output (rank 0)."""
        if self.team.main:
            print("\n".join(describe(cells, self.store)))


def progress(records: list[Record]) -> str:
    """What a progress line adds about a finished cell: its time, and how its requests were split over processes."""
    first = records[0] if records else None
    took = f" in {first.seconds:.1f} s" if first is not None and first.seconds is not None else ""
    split = first.extra.get("requests_per_process") if first is not None else None
    return took + (f", requests per process: {' + '.join(map(str, split))}" if split and len(split) > 1 else "")


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
    """The index-th (1-based) of `total` contiguous, near-equal blocks of cells: shards never collide,
    and cells of one group mostly stay together."""
    size, extra = divmod(len(cells), total)
    start = (index - 1) * size + min(index - 1, extra)
    return cells[start: start + size + (1 if index <= extra else 0)]


def describe(cells: list[Cell], store: ResultsStore) -> list[str]:
    """`--dry-run`: one line per cell, done or pending."""
    return [f"{'done   ' if store.has_run(c.run_id) else 'pending'} {c.label}" for c in cells]


def execute(cells: list[Cell], compute, store: ResultsStore, check=None, shard_text: str | None = None,
            dry_run: bool = False, recompute: bool = False) -> list[str] | None:
    """Shard (`shard_text`: "i/n"), then list (`dry_run`) or run the cells with the one runner. The rank-0 rule:
    the run ids of every cell on rank 0, which reports for all; none on the other processes of a data-parallel run;
    None for a dry run."""
    index, total = parse_shard(shard_text)
    mine = shard(cells, index, total)
    runner = Runner(store, recompute=recompute)
    if total > 1:
        runner.console.print(f"shard {index}/{total}: {len(mine)} of {len(cells)} cells")
    if dry_run:
        runner.list(mine)
        return None
    store.check_writable()
    run_ids = runner.run(mine, compute, check)
    runner.console.print(f"results store: {store.root}")
    return run_ids
