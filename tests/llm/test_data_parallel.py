"""Data parallel on this CPU: `llmtrunc sweep` launched as 2 processes by torchrun (gloo) against 1 process.

The 2-process records equal the 1-process ones value for value (stderr and per-item values included), for
loglikelihood and for generation at batch size 1; each process scored about half of every cell's requests
(counted: the records' requests_per_process); only rank 0 wrote cells and printed the table. A process that dies
ends the run: rank 0's last line is one `llmtrunc: error:`, and the store holds complete cells only. The same on
SmolLM2 and a second family from hooks/ is in the full tier.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtrunc.cli import main
from llmtrunc.store import ResultsStore

PROVENANCE = ["seconds", "time", "command", "world_size", "requests_per_process"]  # how and when, not what

# torchrun runs this instead of the console script: it logs which rank writes which cell, and can make rank 1 die
# (SIGKILL) as it starts the evaluation of cell KILL_AT.
LAUNCHED = """
import os, signal, sys
import lm_eval
from llmtrunc.cli import main
from llmtrunc.store import ResultsStore

write_run, evaluate, started = ResultsStore.write_run, lm_eval.simple_evaluate, []

def logged_write(store, rid, *args, **kwargs):
    with open(os.environ["WRITES_LOG"], "a") as log:
        log.write(f"{os.environ['RANK']} {rid}\\n")
    return write_run(store, rid, *args, **kwargs)

def dying_evaluate(*args, **kwargs):
    started.append(1)
    if os.environ["RANK"] == "1" and len(started) == int(os.environ.get("KILL_AT", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
    return evaluate(*args, **kwargs)

ResultsStore.write_run, lm_eval.simple_evaluate = logged_write, dying_evaluate
sys.exit(main(sys.argv[1:]))
"""


def launch(tmp: Path, args: list[str], kill_at: int = 0, timeout: int = 600) -> tuple[subprocess.CompletedProcess, dict]:
    """`llmtrunc args` as 2 torchrun processes; the launcher's result and each rank's stdout and stderr."""
    script = tmp / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "WRITES_LOG": str(tmp / "writes.log"), "KILL_AT": str(kill_at)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "--log-dir", str(tmp / "logs"), "--redirects", "3", str(script), *args],
                         capture_output=True, text=True, timeout=timeout, env=env)
    streams = {}
    for path in (tmp / "logs").rglob("*.log"):  # <log dir>/<run id>/attempt_0/<rank>/{stdout,stderr}.log
        streams[(int(path.parent.name), path.stem)] = path.read_text()
    return run, streams


def comparable(store) -> list[dict]:
    rows = [{k: v for k, v in r.to_json().items() if k not in PROVENANCE} for r in ResultsStore(store).all_records()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint):
    """One sweep (loglikelihood and generation, shared body and shared generation) in 1 process and in 2."""
    tmp = tmp_path_factory.mktemp("data-parallel")
    args = ["sweep", "--model", str(tiny_checkpoint), "--tasks", "arc_easy,gsm8k", "--drop", "first-half,last-half",
            "--limit", "5", "--gen-kwargs", "max_gen_toks=8"]
    assert main(args + ["--results-dir", str(tmp / "one")]) == 0
    run, streams = launch(tmp, args + ["--results-dir", str(tmp / "two")])
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp, run, streams


def test_two_processes_give_the_records_of_one(runs):
    tmp, _, _ = runs
    one, two = comparable(tmp / "one"), comparable(tmp / "two")
    assert len(one) == len(two) == 3 * (2 + 2)  # 3 conditions x (arc_easy acc, acc_norm; gsm8k's two filters)
    assert two == one  # values, stderr, per-item values, drop indices: everything but the provenance
    assert {r.extra["world_size"] for r in ResultsStore(tmp / "two").all_records()} == {2}
    assert {r.extra["world_size"] for r in ResultsStore(tmp / "one").all_records()} == {1}


def test_each_process_scored_about_half_of_every_cell(runs):
    tmp, _, streams = runs
    alone = {r.run_id: r.extra["requests_per_process"] for r in ResultsStore(tmp / "one").all_records()}
    split = {r.run_id: r.extra["requests_per_process"] for r in ResultsStore(tmp / "two").all_records()}
    assert alone.keys() == split.keys() and len(split) == 6
    for rid, (first, second) in split.items():
        per_doc = 5 if "arc_easy" in rid else 1  # lm-eval pads the shorter share with one document's requests
        assert alone[rid] == [20] if per_doc == 5 else [5]  # 5 documents: 4 choices each, or one generation each
        assert abs(first - second) <= per_doc and alone[rid][0] <= first + second <= alone[rid][0] + per_doc
    said = streams[(0, "stderr")]
    assert "requests per process: 12 + 12" in said.replace("\n", " ")  # the split as the run prints it: 3 + 2 documents


def test_only_rank_0_writes_and_prints(runs):
    tmp, _, streams = runs
    writes = (tmp / "writes.log").read_text().split()
    assert writes[0::2] == ["0"] * 6 and len(set(writes[1::2])) == 6
    assert "retention" in streams[(0, "stdout")] and streams[(1, "stdout")] == ""
    assert "results store:" in streams[(0, "stderr")] and "results store:" not in streams[(1, "stderr")]


def test_a_dying_process_ends_the_run_in_one_line_and_leaves_no_partial_cell(tmp_path, tiny_checkpoint):
    args = ["sweep", "--model", str(tiny_checkpoint), "--tasks", "arc_easy", "--drop", "first-half,last-half",
            "--limit", "5", "--results-dir", str(tmp_path / "store")]
    run, streams = launch(tmp_path, args, kill_at=2)
    assert run.returncode != 0
    last = streams[(0, "stderr")].strip().splitlines()[-1]
    assert last.startswith("llmtrunc: error: ") and "the cells in flight were not written" in last
    store = ResultsStore(tmp_path / "store")
    assert [d.name for d in (tmp_path / "store" / "runs").iterdir()] == [r.run_id for r in store.all_records()][:1]
    assert (tmp_path / "writes.log").read_text().split()[0::2] == ["0"]  # the first cell, whole, by rank 0
