"""`llmtrunc eval`: score a model under drop conditions on lm-eval tasks, next to its baseline."""

from __future__ import annotations

import argparse

from llmtrunc.errors import LLMTruncError
from llmtrunc.hooks import POSITIONS
from llmtrunc.models import DEFAULT_MODEL
from llmtrunc.spec import parse_int_list


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads a causal LM (eval, sweep)."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias (see `llmtrunc models`), Hub id, model directory or .gguf file (default {DEFAULT_MODEL})")
    parser.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit) of the model")
    parser.add_argument("--dtype", default="auto", help="torch dtype: auto, float32, bfloat16, float16 (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--batch-size", default="1", help="lm-eval batch size: an integer or auto (default 1)")
    parser.add_argument("--parallelize", action="store_true",
                        help="split a model larger than one GPU over all visible GPUs (device_map=auto)")
    quant = parser.add_mutually_exclusive_group()
    quant.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit weights (extra: llmtrunc[quant], CUDA)")
    quant.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes 4-bit weights (extra: llmtrunc[quant], CUDA)")
    parser.add_argument("--backend", default="hf", choices=("hf", "vllm"),
                        help="hf (hooks; default) or vllm (post-norm drops exported as zeroed LM-head columns)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallel size")
    parser.add_argument("--data-parallel-size", type=int, default=1, help="vLLM data parallel size")


def add_task_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--tasks", required=required,
                        help="comma-separated lm-eval task names (gsm8k, mmlu, squadv2, arc_easy, ...)")
    parser.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's own)")
    parser.add_argument("--limit", type=float, default=None,
                        help="documents per task (an integer) or a fraction of each task (below 1.0)")
    parser.add_argument("--data-dir", default=None,
                        help="offline benchmark data (default $LLMTRUNC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--hub-tasks", action="store_true",
                        help="run the standard Hub-backed tasks even when a local data directory exists")
    parser.add_argument("--apply-chat-template", action="store_true", help="format prompts with the chat template")
    parser.add_argument("--gen-kwargs", default=None, help="generation arguments for generative tasks, e.g. max_gen_toks=256")
    parser.add_argument("--output", default="results", help="results store directory (default ./results)")
    parser.add_argument("--log-samples", action="store_true", help="also write lm-eval's per-sample logs")


def add_drop_options(parser: argparse.ArgumentParser, default: str = "none") -> None:
    parser.add_argument("--drop", action="append", default=None,
                        help="drop spec, repeatable or comma-separated: none, first-half, last-half, first:K, last:K, "
                             f"random:K[@SEED], indices:FILE; K as 50%% or 0.5 (default {default})")
    parser.add_argument("--seed", type=int, default=None, help="seed for random:K specs without @SEED (default 0)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: each random:K spec runs once per seed")
    parser.add_argument("--at", default="post-norm", choices=POSITIONS,
                        help="where to zero: post-norm (the LM head's input, default) or pre-norm (last layer output)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a truncated LLM on lm-eval tasks",
        description="Zero dimensions of the final hidden state and score the model with lm-evaluation-harness. "
                    "For any drop other than none the untouched baseline is also obtained (reused from the results "
                    "store when present) and a retention table is printed.",
    )
    add_model_options(parser)
    add_drop_options(parser)
    add_task_options(parser)
    parser.set_defaults(func=run)


def parse_seeds(text: str | None) -> list[int] | None:
    """--seeds: '0,1,2', '0-4' or '0,2,...,8' (as the encoder track takes them)."""
    return parse_int_list(text, "--seeds") if text else None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LLMTruncError(f"device {device!r} requested but no CUDA device is available")
    return device


def build_settings(args, model: str | None = None):
    from llmtrunc.evaluate import RunSettings
    from llmtrunc.models import resolve_model

    limit = args.limit
    if limit is not None:
        if limit <= 0:
            raise LLMTruncError("--limit must be positive")
        limit = int(limit) if limit >= 1 else limit
    from llmtrunc.quantization import hf_model_kwargs

    _, quantization = hf_model_kwargs(load_in_8bit=args.load_in_8bit, load_in_4bit=args.load_in_4bit)
    extra = {"parallelize": True} if args.parallelize else {}
    return RunSettings(
        model=resolve_model(model or args.model),
        revision=args.revision,
        dtype=args.dtype,
        num_fewshot=args.num_fewshot,
        limit=limit,
        apply_chat_template=args.apply_chat_template,
        gen_kwargs=args.gen_kwargs,
        batch_size=str(args.batch_size),
        device=resolve_device(args.device),
        quantization=quantization,
        backend=args.backend,
        extra_model_args=extra,
    )


def eval_cells(specs, tasks, at: str):
    """Baseline first, then every drop, for each task."""
    from llmtrunc.evaluate import Cell
    from llmtrunc.spec import DropSpec

    specs = [DropSpec("none"), *(s for s in specs if s.kind != "none")]
    return [Cell(task, spec, at) for task in tasks for spec in specs]


def run(args) -> int:
    from rich.console import Console

    from llmtrunc.evaluate import LMProvider, run_cells, use_data_dir
    from llmtrunc.spec import parse_drops
    from llmtrunc.store import ResultsStore
    from llmtrunc.tables import print_retention
    from llmtrunc.tasks import check_num_fewshot, resolve_tasks

    specs = parse_drops(args.drop or ["none"], args.seed, parse_seeds(args.seeds))
    use_data_dir(args.data_dir)
    tasks = resolve_tasks([t for t in args.tasks.split(",") if t.strip()], args.data_dir, args.hub_tasks)
    check_num_fewshot(tasks, args.num_fewshot)
    settings = build_settings(args)
    store = ResultsStore(args.output)
    provider = LMProvider(settings, None, args.tensor_parallel_size, args.data_parallel_size)
    run_ids = run_cells(eval_cells(specs, tasks, args.at), settings, store, provider, args.log_samples)
    print_retention(store, run_ids)
    Console(stderr=True).print(f"results store: {store.root}")
    return 0
