"""The results store: one directory per completed cell, read back as one flat table of records.

    <root>/runs/<run_id>/records.jsonl   the cell's records (llmtrunc.record.Record), written last
    <root>/runs/<run_id>/results.json    the backend's own results (lm-eval's JSON for LLM cells)
    <root>/runs/<run_id>/samples_*.jsonl per-item logs when asked for
    <root>/records.jsonl.gz              a compact store: the records a committed report was built from

A run id is the hash of the cell key (llmtrunc.record.cell_key), so "was this computed?" is a
lookup; an interrupted cell leaves no records.jsonl and is simply redone; concurrent writers
(shards, cluster jobs) never write the same file unless they compute the same cell. Every file is
written to a temporary name and renamed, so no reader ever sees half a record.

Every command finds the store the same way: --results-dir, else $LLMTRUNC_RESULTS_DIR, else
./results in the working directory.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from llmtrunc.errors import LLMTruncError
from llmtrunc.files import atomic_write
from llmtrunc.record import Record

RESULTS_ENV = "LLMTRUNC_RESULTS_DIR"
COMPACT_FILE = "records.jsonl.gz"


def default_results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or "results").expanduser()


def records_jsonl(records: Iterable[Record | dict]) -> str:
    rows = (r.to_json() if isinstance(r, Record) else r for r in records)
    return "".join(json.dumps(row, default=str, sort_keys=True) + "\n" for row in rows)


def _read_jsonl(path: Path) -> list[Record]:
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [Record.from_json(json.loads(line)) for line in text.splitlines() if line.strip()]


def read_records(path: str | os.PathLike) -> list[Record]:
    """The records of a records.jsonl(.gz) file, or of every cell of a store (a report folder included)."""
    path = Path(path)
    return ResultsStore(path).all_records() if path.is_dir() else _read_jsonl(path)


class ResultsStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_results_dir()
        self._compact_cache: tuple[int, list[Record]] | None = None

    def check_writable(self) -> None:
        """Refuse, before anything is computed, a store that cannot be written: a file where a folder of its path
        should be, or a folder without write permission."""
        existing = self.root.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise LLMTruncError(f"results folder {self.root} cannot be created: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise LLMTruncError(f"results folder {self.root} is not writable (no permission on {existing})")

    def run_dir(self, rid: str) -> Path:
        return self.root / "runs" / rid

    def has_run(self, rid: str) -> bool:
        return (self.run_dir(rid) / "records.jsonl").is_file() or rid in self._compact_ids()

    def run_records(self, rid: str) -> list[Record]:
        path = self.run_dir(rid) / "records.jsonl"
        if path.is_file():
            return _read_jsonl(path)
        return [r for r in self._compact() if r.run_id == rid]

    def write_run(self, rid: str, records: Iterable[Record], extra_files: dict[str, Any] | None = None) -> Path:
        """Write a cell's side files, then its records; the records file marks the cell complete."""
        directory = self.run_dir(rid)
        for name, content in (extra_files or {}).items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            atomic_write(directory / name, text)
        atomic_write(directory / "records.jsonl", records_jsonl(records))
        return directory

    def all_records(self, run_ids: Iterable[str] | None = None) -> list[Record]:
        """The records of the given cells (default: every completed cell), in run-id order."""
        wanted = None if run_ids is None else set(run_ids)
        found: dict[str, list[Record]] = {}
        for record in self._compact():
            if wanted is None or record.run_id in wanted:
                found.setdefault(record.run_id, []).append(record)
        paths = sorted(self.root.glob("runs/*/records.jsonl")) if wanted is None else \
            [self.run_dir(rid) / "records.jsonl" for rid in sorted(wanted)]
        for path in paths:
            if path.is_file():
                found[path.parent.name] = _read_jsonl(path)  # a cell's own directory wins over a compact copy
        return [r for rid in sorted(found) for r in found[rid]]

    def records(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per metric value (see `all_records`)."""
        return pd.DataFrame([r.to_json() for r in self.all_records(run_ids)])

    def _compact(self) -> list[Record]:
        path = self.root / COMPACT_FILE
        if not path.is_file():
            return []
        stamp = path.stat().st_mtime_ns
        if self._compact_cache is None or self._compact_cache[0] != stamp:
            self._compact_cache = (stamp, _read_jsonl(path))
        return self._compact_cache[1]

    def _compact_ids(self) -> set[str]:
        return {r.run_id for r in self._compact()}


def write_compact(records: Iterable[Record], folder: Path) -> Path:
    """The records behind a report, in one gzipped JSON Lines file that makes `folder` a store itself.

    Sorted, and gzipped without a timestamp, so the same records always give the same bytes."""
    ordered = sorted(records, key=lambda r: (r.run_id, r.subtask or "", r.metric, r.filter))
    path = Path(folder) / COMPACT_FILE
    atomic_write(path, gzip.compress(records_jsonl(ordered).encode(), compresslevel=9, mtime=0))
    return path


def recorded_commands(records: pd.DataFrame) -> list[str]:
    """The distinct command lines behind a set of records."""
    return sorted(set(records["command"].dropna()) - {""}) if "command" in records else []
