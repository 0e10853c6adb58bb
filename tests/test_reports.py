"""Every committed report ships the records it was built from and rebuilds from them byte-identical."""

from pathlib import Path

import pytest

from llmtrunc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (ROOT / "reports").rglob("records.jsonl.gz"))
GENERATED = {"report.md", "report.html", "README.md", "records.jsonl.gz", ".png", ".csv"}


def generated(folder: Path) -> list[Path]:
    """The files a report build writes (hand-written notes and benchmark outputs are left alone)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.name in GENERATED or p.suffix in GENERATED)
                  and not p.name.startswith("bench_") and p.name != "NOTES.md")


def test_every_generated_report_ships_its_records():
    folders = {p.parent for p in (ROOT / "reports").rglob("*") if p.suffix in (".png", ".csv")}
    assert folders and folders <= set(SHIPPED)


@pytest.mark.parametrize("folder", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_report_rebuilds_byte_identical(folder, tmp_path, capsys):
    assert main(["report", "--results-dir", str(folder), "--out", str(tmp_path)]) == 0
    rebuilt = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(folder): p.read_bytes() for p in generated(folder)}
    assert sorted(rebuilt) == sorted(committed)
    for name, data in rebuilt.items():
        assert data == committed[name], f"{folder.relative_to(ROOT) / name} differs from its rebuild"
