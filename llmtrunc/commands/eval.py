"""`llmtrunc eval`: score a model under drop conditions on lm-eval tasks, next to its baseline.

`eval` is a one-model `sweep`: both build the grid with the same flags, run it with the one
runner (compute once across conditions unless --separate) and print the score + retention table.
"""

from __future__ import annotations

import argparse

from llmtrunc.commands.options import add_grid_options, add_results_dir, add_run_options, add_via_option
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.models import DEFAULT_MODEL


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="alias (see `llmtrunc models`), Hub id, model directory or .gguf file; sweep: "
                             f"comma-separated (default {DEFAULT_MODEL})")
    parser.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit) of the model")
    parser.add_argument("--dtype", default="auto", help="torch dtype: auto, float32, bfloat16, float16 (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--batch-size", default="1",
                        help="lm-eval batch size: an integer or auto (default 1); shared-body scoring runs this many "
                             "requests per body pass")
    parser.add_argument("--parallelize", action="store_true",
                        help="split a model larger than one GPU over all visible GPUs (device_map=auto)")
    quant = parser.add_mutually_exclusive_group()
    quant.add_argument("--load-in-8bit", action="store_true",
                       help="bitsandbytes 8-bit weights (LLM.int8; CPU or GPU, as the installed bitsandbytes supports)")
    quant.add_argument("--load-in-4bit", action="store_true",
                       help="bitsandbytes 4-bit NF4 weights (CPU or GPU, as the installed bitsandbytes supports)")
    parser.add_argument("--backend", default="hf", choices=("hf", "vllm"),
                        help="hf (hooks; default) or vllm (post-norm drops exported into the weights)")
    add_via_option(parser)
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallel size")
    parser.add_argument("--data-parallel-size", type=int, default=1, help="vLLM data parallel size")
    parser.add_argument("--no-parity-check", action="store_true",
                        help="--backend vllm: score without first comparing each engine with the hook path on the first "
                             "documents of its task (the parity guard, docs/scale-out.md)")


def add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default=None,
                        help="comma-separated lm-eval task names or task YAML files (gsm8k, mmlu, squadv2, arc_easy, ...)")
    parser.add_argument("--include-path", action="append", default=None,
                        help="a folder of your own lm-eval task YAMLs (repeatable), as lm-eval's --include_path")
    parser.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's own)")
    parser.add_argument("--limit", type=float, default=None,
                        help="documents per task (an integer) or a fraction of each task (below 1.0)")
    parser.add_argument("--data-dir", default=None,
                        help="offline benchmark data (default $LLMTRUNC_DATA_DIR, else ../shared/data)")
    parser.add_argument("--hub-tasks", action="store_true",
                        help="run the standard Hub-backed tasks even when a local data directory exists")
    parser.add_argument("--apply-chat-template", action="store_true", help="format prompts with the chat template")
    parser.add_argument("--gen-kwargs", default=None, help="generation arguments for generative tasks, e.g. max_gen_toks=256")
    parser.add_argument("--log-samples", action="store_true", help="also write lm-eval's per-sample logs")


def add_llm_grid_parser(subparsers, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """The flags `eval` and `sweep` share: model, tasks, grid, positions, results store, shards."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    add_model_options(parser)
    add_task_options(parser)
    add_grid_options(parser)
    parser.add_argument("--at", default=None,
                        help="where to zero, comma-separated: post-norm (the LM head's input, default) or pre-norm "
                             "(the last layer's output)")
    parser.add_argument("--calibration", default=None,
                        help="text file whose first tokens give the activation profile that outliers, top:K, bottom:K, "
                             "random:K!outliers and random:outliers resolve against (default: the data directory's "
                             "wikitext2_raw/wiki.test.raw)")
    parser.add_argument("--calibration-tokens", type=int, default=None,
                        help="calibration tokens averaged over (default 8192)")
    parser.add_argument("--separate", action="store_true",
                        help="run every condition through the full model (no compute-once shared body), e.g. to compare")
    add_results_dir(parser, old="--output")
    add_run_options(parser)
    return parser


def register(subparsers) -> None:
    parser = add_llm_grid_parser(
        subparsers, "eval", "evaluate a truncated LLM on lm-eval tasks",
        "Zero dimensions of the final hidden state and score the model with lm-evaluation-harness. The untouched "
        "baseline is always part of the grid (reused from the results store when present) and a score + "
        "retention table is printed.")
    parser.set_defaults(func=run)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LLMTruncError(f"device {device!r} requested but no CUDA device is available")
    return device


def build_settings(args, model: str):
    from llmtrunc.llm.calibration import Calibration
    from llmtrunc.llm.evaluate import RunSettings
    from llmtrunc.llm.models import resolve_model
    from llmtrunc.llm.quantization import hf_model_kwargs

    limit = args.limit
    if limit is not None:
        if limit <= 0:
            raise LLMTruncError("--limit must be positive")
        limit = int(limit) if limit >= 1 else limit
    device = resolve_device(args.device)
    _, quantization = hf_model_kwargs(load_in_8bit=args.load_in_8bit, load_in_4bit=args.load_in_4bit, device=device)
    if args.via != "auto" and args.backend != "vllm":
        raise LLMTruncError("--via chooses how --backend vllm writes a drop into the weights; the hf backend uses hooks")
    if args.no_parity_check and args.backend != "vllm":
        raise LLMTruncError("--no-parity-check skips the check of a vLLM engine against the hook path; the hf backend "
                            "is the hook path")
    return RunSettings(
        model=resolve_model(model), revision=args.revision, dtype=args.dtype, num_fewshot=args.num_fewshot,
        limit=limit, apply_chat_template=args.apply_chat_template, gen_kwargs=args.gen_kwargs,
        batch_size=str(args.batch_size), device=device, quantization=quantization,
        backend=args.backend, include_paths=tuple(args.include_path or ()),
        extra_model_args={"parallelize": True} if args.parallelize else {}, export_via=args.via,
        # attribute has no profile-based drops, hence no --calibration flags
        calibration=Calibration.of(getattr(args, "calibration", None), getattr(args, "calibration_tokens", None)),
    )


def positions(text: str) -> list[str]:
    from llmtrunc.llm.architectures import check_position

    found = [p.strip() for p in text.split(",") if p.strip()]
    for at in found:
        check_position(at)
    if not found:
        raise LLMTruncError("no position given (--at post-norm,pre-norm)")
    return found


def run_grid(args, models: list[str], task_names: list[str], drops, ats: list[str]) -> int:
    """Everything `eval` and `sweep` do once their grid is known: the run, its cells, the score table."""
    from llmtrunc.commands.options import results_store
    from llmtrunc.llm.evaluate import LLMCompute
    from llmtrunc.llm.run import LLMRun
    from llmtrunc.llm.shared_body import SharedBodyLM
    from llmtrunc.tables import print_scores

    settings = [build_settings(args, model) for model in models]
    run = LLMRun.build(settings, task_names, args.data_dir, args.hub_tasks, results_store(args))
    if args.backend == "vllm" and not args.dry_run:
        from llmtrunc.llm.vllm_backend import delegate

        code = delegate(args.argv)  # not None: the command ran in the vLLM environment
        if code is not None:
            return code
    compute = LLMCompute(None if args.separate else SharedBodyLM, args.tensor_parallel_size, args.data_parallel_size,
                         args.log_samples, parity_check=not args.no_parity_check)
    run.execute(run.drop_cells(drops, ats), compute, args.shard, args.dry_run,
                report=lambda run_ids: print_scores(run.store.records(run_ids)))
    return 0


def run(args) -> int:
    from llmtrunc.commands.options import grid_specs

    if not args.tasks:
        raise LLMTruncError("no tasks: pass --tasks")
    if args.model and "," in args.model:
        raise LLMTruncError("eval takes one --model: use `llmtrunc sweep` for several")
    return run_grid(args, [args.model or DEFAULT_MODEL], [args.tasks], grid_specs(args.drop, args.k, args.seeds, args.seed),
                    positions(args.at or "post-norm"))
