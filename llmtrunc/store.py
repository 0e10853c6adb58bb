"""The results store: one directory per completed run, read back as one flat table.

    <root>/runs/<run_id>/records.jsonl   flat records (one metric value each), written last
    <root>/runs/<run_id>/results.json    the backend's own results (lm-eval's JSON for LLM runs)
    <root>/runs/<run_id>/samples_*.jsonl per-sample logs when asked for

A run id is derived from the run's settings (`run_key`), so asking "was this already computed?"
is a lookup, an interrupted run leaves no records.jsonl and is simply redone, and concurrent
writers (shards, cluster jobs) never write the same file unless they compute the same cell.
Every file is written to a temporary name and renamed, so no reader ever sees half a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd


def run_key(settings: dict[str, Any]) -> str:
    """A stable short hash of the settings that determine a run's numbers."""
    canonical = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_id(settings: dict[str, Any], *label_parts: str) -> str:
    label = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in label_parts if p)
    return f"{label}__{run_key(settings)}" if label else run_key(settings)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary name and rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, rid: str) -> Path:
        return self.root / "runs" / rid

    def has_run(self, rid: str) -> bool:
        return (self.run_dir(rid) / "records.jsonl").is_file()

    def run_records(self, rid: str) -> list[dict]:
        path = self.run_dir(rid) / "records.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_run(self, rid: str, records: Iterable[dict], extra_files: dict[str, Any] | None = None) -> Path:
        """Write a run's side files, then its records; the records file marks the run complete."""
        directory = self.run_dir(rid)
        for name, content in (extra_files or {}).items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
            atomic_write(directory / name, text)
        lines = "".join(json.dumps(r, default=str, sort_keys=True) + "\n" for r in records)
        atomic_write(directory / "records.jsonl", lines)
        return directory

    def records(self) -> pd.DataFrame:
        """Every record of every completed run, one row per metric value."""
        rows = []
        for path in sorted(self.root.glob("runs/*/records.jsonl")):
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
        return pd.DataFrame(rows)


def recorded_commands(records: pd.DataFrame) -> list[str]:
    """The distinct command lines behind a set of records (older records carry none)."""
    return sorted(set(records["command"].dropna())) if "command" in records else []
