"""The reports `llmtrunc report` writes: each one's builder, registered by a lazy target (core names the
tracks' code without importing it), and the record tracks it reads.

A builder takes the records of its tracks (a DataFrame of their JSON form) and a folder, and returns the files
it wrote there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from llmtrunc.registry import Registry

BUILDERS: Registry[Callable] = Registry("report")
BUILDERS.register_lazy("llm", "llmtrunc.llm.report:build_report")
BUILDERS.register_lazy("encoder", "llmtrunc.encoder.report:build_report")
BUILDERS.register_lazy("encoder_analyses", "llmtrunc.encoder.analysis_report:build_report")

# report (its folder when several are written) -> the record tracks it reads
READS = {"llm": ("llm", "llm-analysis"), "encoder": ("encoder",), "encoder_analyses": ("encoder-analysis",)}
TRACKS = [track for tracks in READS.values() for track in tracks]


def build(records: list, out: Path, tracks: list[str]) -> list[Path]:
    """Write the report of each chosen track, and the compact records of all of them, into `out`."""
    import pandas as pd

    from llmtrunc.store import write_compact

    chosen = [r for r in records if r.track in tracks]
    written = [write_compact(chosen, out)]
    reports = [name for name, covered in READS.items() if set(covered) & set(tracks)]
    for name in reports:
        folder = out if len(reports) == 1 else out / name
        written += BUILDERS.get(name)(pd.DataFrame([r.to_json() for r in chosen if r.track in READS[name]]), folder)
    return written
