"""`llmtrunc attribute`: the change of a multiple-choice task's score when each post-norm dimension alone is
removed, then removing the K% most degrading vs most improving vs random dimensions (llmtrunc.llm.attribution)."""

from __future__ import annotations

import argparse

from llmtrunc.commands.eval import add_model_options, add_task_options
from llmtrunc.commands.options import add_results_dir, add_run_options, add_selection_options
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.models import DEFAULT_MODEL


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attribute", help="per-dimension attribution of an LLM on a multiple-choice task",
        description="Zero each dimension of the LM head's input alone (rank-1 updates of the kept states' logits, "
                    "exact), record the change of acc and of the gold log-likelihood per dimension, then compare "
                    "removing the K%% most degrading, most improving and random dimensions.")
    add_model_options(parser)
    add_task_options(parser)
    add_selection_options(parser)
    parser.add_argument("--recompute", action="store_true", help="compute cells again even when stored")
    add_results_dir(parser)
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llmtrunc.commands.eval import build_settings
    from llmtrunc.commands.options import results_store, selection_options
    from llmtrunc.llm.attribution import AttributionCompute, summary
    from llmtrunc.llm.run import LLMRun

    if not args.tasks:
        raise LLMTruncError("no tasks: pass --tasks")
    if args.model and "," in args.model:
        raise LLMTruncError("attribute takes one --model")
    ks, seeds = selection_options(args)
    settings = build_settings(args, args.model or DEFAULT_MODEL)
    run = LLMRun.build([settings], [args.tasks], args.data_dir, args.hub_tasks, results_store(args))
    run.execute(run.attribution_cells(ks, seeds), AttributionCompute(), args.shard, args.dry_run, args.recompute,
                report=lambda run_ids: print(summary(run.store.all_records(run_ids))))
    return 0
