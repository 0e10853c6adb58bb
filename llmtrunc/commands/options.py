"""Flags that several commands share, spelled and defaulted the same everywhere, and `execute`: sharding, dry runs and the
one runner for every command that runs cells."""

from __future__ import annotations

import argparse
import sys

from llmtrunc.store import RESULTS_ENV, ResultsStore


def add_results_dir(parser: argparse.ArgumentParser, old: str | None = None) -> None:
    """--results-dir (default $LLMTRUNC_RESULTS_DIR, else ./results); `old` is a deprecated spelling."""
    parser.add_argument("--results-dir", default=None,
                        help=f"results store (default ${RESULTS_ENV}, else ./results in the working directory)")
    if old:
        parser.add_argument(old, dest="deprecated_results_dir", default=None, help=argparse.SUPPRESS)


def results_store(args) -> ResultsStore:
    old = getattr(args, "deprecated_results_dir", None)
    if old and not args.results_dir:
        print("llmtrunc: note: --output is deprecated, use --results-dir", file=sys.stderr)
        return ResultsStore(old)
    return ResultsStore(args.results_dir)


def add_grid_options(parser: argparse.ArgumentParser, k_default: str | None = None, seeds_default: str | None = None,
                     drop_default: str = "none") -> None:
    """--drop/--k/--seeds/--seed: expanded by llmtrunc.spec.expand_grid in every track."""
    parser.add_argument("--drop", action="append", default=None,
                        help="drop specs, repeatable or comma-separated: none, first-half, last-half, first:K, last:K, "
                             "random:K[@SEED], indices:FILE, outliers, top:K, bottom:K, random:K!outliers[@SEED], "
                             "random:outliers[@SEED] (encoders also pca:K); K as 50%% or 0.5. A bare family "
                             f"(first, last, random, pca, top, bottom, random!outliers) is crossed with --k "
                             f"(default {drop_default})")
    parser.add_argument("--k", default=k_default,
                        help="dropped percents for bare families: 0,10,...,90, 10-30 or 25%%,50%%"
                             + (f" (default {k_default})" if k_default else ""))
    parser.add_argument("--seeds", default=seeds_default,
                        help="seeds for random specs without @SEED: 0,1,2, 0-4 or 0,2,...,8"
                             + (f" (default {seeds_default})" if seeds_default else ""))
    parser.add_argument("--seed", type=int, default=None, help="one seed for random specs without @SEED (default 0)")


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """--k/--seeds of an attribution's selection comparison (both tracks): K% most degrading / improving / random."""
    parser.add_argument("--k", default="10,20,...,90",
                        help="dropped percents of the attribution selection, strictly between 0 and 100: 10,20,...,90, "
                             "10-30 or 12.5%%,25%% (default 10,20,...,90)")
    parser.add_argument("--seeds", default="0-4", help="random-baseline seeds")


def selection_options(args) -> tuple[list[int | float], list[int]]:
    """The selection's K grid (percents, the grammar of every --k: llmtrunc.spec.parse_k_list) and seeds."""
    from llmtrunc.errors import LLMTruncError
    from llmtrunc.spec import k_percent, parse_int_list, parse_k_list

    ks = [k_percent(k) for k in parse_k_list(args.k)]
    if any(not 0 < k < 100 for k in ks):
        raise LLMTruncError("--k values must lie strictly between 0 and 100 (percent)")
    return ks, parse_int_list(args.seeds, "--seeds")


def add_via_option(parser: argparse.ArgumentParser) -> None:
    """--via: how a post-norm drop is written as weights (llmtrunc.llm.export)."""
    from llmtrunc.llm.export import VIA

    parser.add_argument("--via", default="auto", choices=VIA,
                        help="how a drop is written as weights (export; eval/sweep with --backend vllm): norm (zeroed "
                             "entries of the final norm's scale), head (zeroed LM-head columns) or auto (default: the "
                             "architecture's first exact method, hooks/README.md)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--shard/--dry-run: which cells of the grid this command runs."""
    parser.add_argument("--shard", default=None, help="i/n: run only the i-th of n contiguous blocks of cells")
    parser.add_argument("--dry-run", action="store_true", help="list the cells (done or pending) without running")


def grid_specs(drops: list[str] | None, k: str | None, seeds: str | None, seed: int | None,
               default_drop: str = "none"):
    """The drop specs of --drop, --k, --seeds and --seed (llmtrunc.spec.expand_grid)."""
    from llmtrunc.spec import expand_grid, parse_int_list, parse_k_list

    ks = parse_k_list(k) if k else None
    seed_list = parse_int_list(seeds, "--seeds") if seeds else None
    return expand_grid(drops or [default_drop], ks, seed_list, seed)


def execute(args, cells, compute, store: ResultsStore, check=None, recompute: bool = False) -> list[str] | None:
    """llmtrunc.runner.execute with the command's --shard and --dry-run."""
    from llmtrunc.runner import execute as run_cells

    return run_cells(cells, compute, store, check, getattr(args, "shard", None), getattr(args, "dry_run", False),
                     recompute)
