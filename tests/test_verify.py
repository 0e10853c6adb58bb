"""`llmtrunc verify`: stored cells re-run and compared with their records exactly (llmtrunc/verify.py, the tracks'
replay modules, llmtrunc/commands/verify.py)."""

import json
from pathlib import Path

import pytest

from llmtrunc.cli import main
from llmtrunc.record import Record
from llmtrunc.verify import compare, replay_limit

ROOT = Path(__file__).resolve().parents[1]


def record(metric="acc", items=(1, 0, 1, 1), subtask="arc_easy", n_samples=4, value=None, dims=(3, 4)):
    return Record(run_id="r", track="llm", model="m", task="arc_easy", subtask=subtask, metric=metric, drop="last:50%",
                  at="post-norm", value=sum(items) / len(items) if value is None else value,
                  dropped_indices=list(dims), n_dropped=len(dims),
                  extra={"items": list(items) if items else None, "n_samples": n_samples})


def test_the_first_n_items_are_compared_item_for_item():
    stored = [record(), record("word_perplexity", items=(), value=31.5)]
    perplexity = record("word_perplexity", items=(), value=12.0)  # at 2 items: not comparable, not a difference
    same = compare(stored, [record(items=(1, 0)), perplexity], truncated=True)
    assert same.same and same.line().startswith("match   m / arc_easy / last:50% / post-norm: acc equal item for item "
                                                "on the first 2 of 4 items; the 2 dropped dimensions equal")
    differs = compare(stored, [record(items=(1, 1)), perplexity], truncated=True)
    assert not differs.same and "acc: item 1 stored 0 now 1 (1 of 2 items differ)" in differs.line()
    moved = compare(stored, [record(items=(1, 0), dims=(3, 5)), perplexity], truncated=True)
    assert not moved.same and "the dropped dimensions differ" in moved.line()


def test_without_per_item_values_only_a_whole_cell_compares():
    stored = [record("word_perplexity", items=(), value=31.5)]
    assert compare(stored, [record("word_perplexity", items=(), value=31.5)], truncated=False).same
    unequal = compare(stored, [record("word_perplexity", items=(), value=31.500000001)], truncated=False)
    assert not unequal.same and "stored 31.5 now 31.500000001" in unequal.line()  # no tolerance
    unverified = compare(stored, [record("word_perplexity", items=(), value=7.0)], truncated=True)
    assert not unverified.same and unverified.line().startswith("UNVERIFIED")
    group = [record(subtask="arc_easy", n_samples=None)]  # a group's items: its members' first N are not a prefix
    assert compare(group, [record(items=(0, 0), n_samples=None)], truncated=True).line().startswith("UNVERIFIED")


def test_the_limit_a_cell_replays_at():
    assert replay_limit(None, 30) == (30, True) and replay_limit(2376, 30) == (30, True)
    assert replay_limit(20, 30) == (20, False) and replay_limit(0.5, 30) == (0.5, False)


def test_a_stored_cell_verifies_and_a_changed_record_does_not(tiny_checkpoint, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["eval", "--model", str(tiny_checkpoint), "--tasks", "arc_easy", "--limit", "4", "--drop", "last-half",
                 "--results-dir", str(store)]) == 0
    capsys.readouterr()
    assert main(["verify", str(store), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("match") for line in lines), lines
    assert "acc, acc_norm equal item for item on the first 3 of 4 items" in lines[0]
    cell = next(p for p in store.glob("runs/*/records.jsonl") if "last-50" in p.parent.name)
    rows = [json.loads(line) for line in cell.read_text().splitlines()]
    rows[0]["items"][1] = 1 - rows[0]["items"][1]  # one stored outcome that the model does not give
    cell.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["verify", str(store), "--drop", "last-half", "--limit", "3"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("DIFFERS") and f"item 1 stored {rows[0]['items'][1]} now {1 - rows[0]['items'][1]}" in out


@pytest.mark.parametrize("argv,message", [
    (["verify", "/nonexistent/records.jsonl.gz"], "records not found: /nonexistent/records.jsonl.gz"),
    (["verify", str(ROOT / "reports" / "llm" / "smollm2"), "--task", "no_such_task"],
     "matches --task no_such_task"),
    (["verify", str(ROOT / "reports" / "llm" / "smollm2"), "--limit", "0"], "--limit must be positive"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["llm/smollm2", "--task", "arc_easy", "--drop", "last-half", "--at", "post-norm", "--limit", "30"],
    ["encoder", "--task", "banking77", "--drop", "last:50%"],
], ids=["arc_easy", "banking77"])
def test_committed_cells_come_out_of_a_fresh_clone(argv, capsys):
    """The issue's command (one position) and an encoder cell, re-run here and equal to the committed records:
    arc_easy's first 30 items under last-half (about 40 s), banking77 with its last half removed (the whole task,
    about 60 s: 13083 texts encoded)."""
    assert main(["verify", str(ROOT / "reports" / argv[0] / "records.jsonl.gz"), *argv[1:]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("match"), out
