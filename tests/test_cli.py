"""The CLI end to end on the real offline model and data, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from llmtrunc.cli import main
from llmtrunc.store import ResultsStore


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """The console script's own entry (`llmtrunc.cli.run`) in a fresh process."""
    return subprocess.run([sys.executable, "-m", "llmtrunc.cli", *argv], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("argv,message", [
    (["eval", "--model", "no-such-model", "--tasks", "arc_easy"], "unknown model 'no-such-model'"),
    (["eval", "--drop", "half", "--tasks", "arc_easy"], "malformed drop spec 'half'"),
    (["eval", "--drop", "random:150%", "--tasks", "arc_easy"], "outside 0-100%"),
    (["eval", "--at", "mid-norm", "--tasks", "arc_easy"], "unknown position 'mid-norm'"),
    (["eval", "--tasks", "arc_easy", "--drop", "indices:/nonexistent/dims.txt"], "index file not found"),
    (["eval", "--tasks", "arc_easy", "--k", "150", "--drop", "first"], "outside 0-100%"),
    (["eval", "--tasks", "arc_easy", "--num-fewshot", "5"], "--hub-tasks"),
    (["eval", "--tasks", "arc_easy", "--include-path", "/nonexistent/tasks"], "not a directory"),
    (["encoder", "eval", "--tasks", "no_such_task"], "unknown task 'no_such_task'"),
    (["encoder", "eval", "--drop", "random:2"], "outside 0-100%"),
    (["report", "--results-dir", "/nonexistent/store", "--out", "/tmp/x"], "results store not found"),
    (["eval", "--tasks", "no_such_task"], "unknown task 'no_such_task'"),
    (["eval", "--tasks", "arc_easy", "--data-dir", "/nonexistent/data"], "data directory not found"),
    (["eval", "--tasks", "arc_easy", "--limit", "0"], "--limit must be positive"),
    (["sweep", "--tasks", "arc_easy", "--drop", "random:50%", "--seeds", "0,x", "--dry-run"], "malformed --seeds '0,x'"),
    (["attribute", "--model", "smollm2-135m"], "no tasks"),
    (["attribute", "--tasks", "arc_easy", "--k", "0,50"], "--k values must lie strictly between 0 and 100"),
    (["attribute", "--tasks", "arc_easy", "--backend", "vllm"], "needs the hf backend"),
])
def test_bad_input_is_one_line_and_nonzero(argv, message, capsys):
    """In process, as the console script runs `main`: an unexpected exception would fail the test itself."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert message in lines[0]


@pytest.mark.parametrize("flags,message", [
    (["--drop", "random:50%", "--seeds", "3-1"], "malformed --seeds '3-1': the range 3-1 is reversed (did you mean 1-3?)"),
    (["--drop", "first:0%"], "drop first:0% removes no dimension: it is the baseline"),
    (["--drop", "indices:EMPTY"], "removes no dimension: it is the baseline, which every run scores already (its file "
                                  "lists none)"),
    (["--drop", "last-half", "--results-dir", "FILE/results"], "cannot be created: FILE is a file"),
])
def test_probes_are_refused_before_anything_is_computed(flags, message, tmp_path, monkeypatch, capsys):
    """The issue's probes: a reversed seed range, a drop that removes nothing, a results folder that cannot be made;
    each one line and exit 2 before the runner starts (it used to compute the baseline first)."""
    from llmtrunc.runner import Runner

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "file").write_text("in the way")
    started = []
    monkeypatch.setattr(Runner, "run", lambda *a, **k: started.append(a))
    flags = [f.replace("EMPTY", str(tmp_path / "empty.txt")).replace("FILE", str(tmp_path / "file")) for f in flags]
    store = [] if "--results-dir" in flags else ["--results-dir", str(tmp_path / "store")]
    code = main(["eval", "--tasks", "arc_easy", "--limit", "2", *store, *flags])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message.replace("FILE", str(tmp_path / "file")) in lines[0], lines
    assert not started and not (tmp_path / "store").exists()


def test_a_grid_may_start_at_k_0(capsys):
    """K = 0 of a grid is its curve's origin (the encoder report's first column), not a refused drop."""
    assert main(["sweep", "--tasks", "arc_easy", "--drop", "first", "--k", "0,50", "--dry-run"]) == 0
    assert "first:0%" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line_from_the_console_script():
    proc = run_cli("eval", "--model", "no-such-model", "--tasks", "arc_easy")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmtrunc: error: unknown model 'no-such-model': use an alias")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--drop", "--seed", "--seeds", "--k", "--at", "--tasks", "--include-path", "--limit",
                   "--data-dir", "--dtype", "--device", "--batch-size", "--results-dir", "--log-samples", "--separate",
                   "--shard", "--dry-run"):
        assert option in text


@pytest.mark.parametrize("command", [["sweep"], ["attribute"], ["report"], ["verify"], ["export"], ["encoder"], ["encoder", "eval"],
                                     ["encoder", "analyze"], ["encoder", "train-simcse"], ["encoder", "report"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0 and "usage: llmtrunc" in capsys.readouterr().out


def test_models_lists_aliases(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for alias in ("llama3.1-8b", "qwen2.5-7b-instruct", "smollm2-135m"):
        assert alias in out


def test_eval_end_to_end_writes_results_and_retention(tmp_path, capsys):
    """The issue's command: smollm2-135m, last-half, arc_easy, limit 20, on the shared data."""
    out = tmp_path / "results"
    argv = ["eval", "--model", "smollm2-135m", "--drop", "last-half", "--tasks", "arc_easy", "--limit", "20",
            "--results-dir", str(out), "--batch-size", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "retention" in printed and "arc_easy" in printed
    records = ResultsStore(out).records()
    assert set(records["drop"]) == {"none", "last:50%"}
    acc = records[records["metric"] == "acc"].set_index("drop")["value"]
    assert 0 <= acc["last:50%"] <= 1 and 0 <= acc["none"] <= 1
    row = records[records["drop"] == "last:50%"].iloc[0]
    assert row["dropped_indices"] == list(range(288, 576)) and row["dim"] == 576
    assert row["at"] == "post-norm" and row["limit"] == 20 and row["task"] == "arc_easy"
    assert row["versions"]["lm-eval"] and row["git_hash"] and row["seconds"] > 0
    run_dir = ResultsStore(out).run_dir(row["run_id"])
    assert json.loads((run_dir / "results.json").read_text())["results"]["local_arc_easy"]
    # a second command reuses both cells from the store: nothing is recomputed
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/records.jsonl")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/records.jsonl")} == before
    # the deprecated --output still finds the same store, with a note
    old = run_cli(*[a if a != "--results-dir" else "--output" for a in argv], "--dry-run")
    assert old.returncode == 0 and "--output is deprecated" in old.stderr and old.stdout.count("done") == 2


def test_lm_eval_entry_sees_the_local_tasks():
    proc = subprocess.run([sys.executable, "-m", "llmtrunc.lm_eval", "validate", "--tasks", "local_arc_easy,local_gsm8k"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
