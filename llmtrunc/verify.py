"""Verifying stored cells: which cells a selection names, and whether a re-run agrees with their records, exactly.

`llmtrunc verify RECORDS --task T --drop SPEC --limit N` re-runs the selected cells from the code and data at hand
(the tracks' `replay`: llmtrunc.llm.replay, llmtrunc.encoder.replay) and compares, per metric:

* where the records keep per-item values (`items`: accuracy-type metrics), the re-run's first N items with the
  stored first N, value for value (a group's aggregate is compared only when the whole cell was re-run);
* otherwise the value itself, which only a re-run of the whole cell can reproduce;
* the dropped dimensions (`dropped_indices`) always.

Nothing is rounded or given a tolerance: one differing item or float is a difference. A cell with nothing that
could be compared is reported as unverified, never as a match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmtrunc import provenance
from llmtrunc.record import Record
from llmtrunc.spec import DropSpec

TRACKS = ("llm", "encoder")  # the tracks whose cells verify can re-run


def select(records: list[Record], task: str | None = None, spec: DropSpec | None = None, at: str | None = None,
           every_seed: bool = False) -> list[list[Record]]:
    """The cells (each its records, run-id order) of the verifiable tracks that match: a task (or any), a drop (its
    exact name; `every_seed`: every seed of a random spec given without @SEED) and a position."""
    cells: dict[str, list[Record]] = {}
    for record in records:
        if record.track not in TRACKS or (task and record.task != task) or (at and record.at not in (at, "-")):
            continue
        if spec is not None and record.drop != spec.name and not (every_seed and record.drop_family == spec.family):
            continue
        cells.setdefault(record.run_id, []).append(record)
    return [cells[rid] for rid in sorted(cells)]


def replay_limit(stored: float | None, limit: int | None) -> tuple[float | None, bool]:
    """The limit a re-run of a cell stored at `stored` items runs at, and whether that is fewer than it stored."""
    if limit is None or (stored is not None and (stored < 1 or stored <= limit)):
        return stored, False
    return limit, True


@dataclass(frozen=True)
class Verdict:
    label: str
    same: bool
    compared: list[str]  # what was found equal (or the first difference)
    notes: list[str]

    def line(self) -> str:
        status = "match  " if self.same else "DIFFERS" if self.compared else "UNVERIFIED"
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{status} {self.label}: {'; '.join(self.compared) or 'nothing comparable'}{notes}"


def version_notes(record: Record) -> list[str]:
    """The packages installed now in other versions than the record's: where floats may move in their last bits."""
    now = provenance.versions()
    moved = {name: (then, now[name]) for name, then in sorted(record.versions.items()) if now.get(name, then) != then}
    if not moved:
        return []
    return ["recorded with " + ", ".join(f"{name} {then}" for name, (then, _) in moved.items()) + "; installed "
            + ", ".join(f"{name} {current}" for name, (_, current) in moved.items())]


def label(record: Record) -> str:
    return " / ".join(p for p in (record.model, record.task, record.drop, "" if record.at == "-" else record.at) if p)


def _items(record: Record) -> list | None:
    items = record.extra.get("items")
    return items if isinstance(items, list) else None


def compare(stored: list[Record], rerun: list[Record], truncated: bool, notes: list[str] | None = None) -> Verdict:
    """Stored records of one cell against a re-run's (see the module docstring)."""
    head = stored[0]
    found = {(r.subtask, r.metric, r.filter): r for r in rerun}
    equal, differ = [], []
    dims_now = (rerun[0].dropped_indices or None) if rerun else None
    if (head.dropped_indices or None) != dims_now:
        differ.append(f"the dropped dimensions differ ({head.n_dropped} stored, "
                      f"{rerun[0].n_dropped if rerun else 0} now)")
    for record in stored:
        key = (record.subtask, record.metric, record.filter)
        name = record.metric if record.subtask == record.task else f"{record.subtask} {record.metric}"
        again = found.get(key)
        if again is None:
            differ.append(f"{name}: not in the re-run")
            continue
        before, now = _items(record), _items(again)
        if before is not None and now is not None:
            if truncated and record.extra.get("n_samples") is None:
                continue  # a group's items: its members' first N are not the first N of the concatenation
            expected = before[: len(now)] if truncated else before
            wrong = [i for i, (a, b) in enumerate(zip(expected, now)) if a != b]
            if wrong or len(expected) != len(now):
                at = wrong[0] if wrong else min(len(expected), len(now))
                differ.append(f"{name}: item {at} stored {expected[at] if at < len(expected) else '-'} now "
                              f"{now[at] if at < len(now) else '-'} ({len(wrong)} of {len(now)} items differ)")
            else:
                equal.append((name, len(now), len(before)))
        elif not truncated:
            if record.value != again.value:
                differ.append(f"{name}: stored {record.value!r} now {again.value!r}")
            else:
                equal.append((name, None, None))
    compared = differ or _equal_text(equal, head)
    return Verdict(label(head), not differ and bool(equal), compared, [*(notes or []), *version_notes(head)])


def _equal_text(equal: list[tuple[str, Any, Any]], head: Record) -> list[str]:
    if not equal:
        return []
    itemised = [(n, k, t) for n, k, t in equal if k is not None]
    whole = [n for n, k, _ in equal if k is None]
    said = []
    if itemised:
        names = ", ".join(dict.fromkeys(n for n, _, _ in itemised))
        counts = {(k, t) for _, k, t in itemised}
        span = f"the first {itemised[0][1]} of {itemised[0][2]} items" if len(counts) == 1 and \
            itemised[0][1] != itemised[0][2] else "every item"
        said.append(f"{names} equal item for item on {span}")
    if whole:
        said.append(f"{', '.join(whole)} equal as floats")
    if head.dropped_indices:
        said.append(f"the {len(head.dropped_indices)} dropped dimensions equal")
    return said
