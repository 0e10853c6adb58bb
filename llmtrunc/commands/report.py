"""`llmtrunc report`: Markdown/HTML reports from a results store, with the records they were built from.

Every report folder gets `records.jsonl.gz`, the compact records of its numbers; the folder is itself
a results store, so `llmtrunc report --results-dir DIR --out DIR` rebuilds it from what it ships.
"""

from __future__ import annotations

from pathlib import Path

from llmtrunc.commands.options import add_results_dir, results_store
from llmtrunc.errors import LLMTruncError
from llmtrunc.reports import TRACKS, build


def add_report_options(parser) -> None:
    add_results_dir(parser)
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--track", default=None,
                        help=f"comma-separated tracks to report: {', '.join(TRACKS)} (default: every track in the "
                             "store); one report writes into --out, several into --out/llm, --out/encoder, "
                             "--out/encoder_analyses")
    parser.add_argument("--model", action="append", default=None, help="only these models (repeatable)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write Markdown/HTML reports from a results store",
                                   description="Tables of scores and retention (with floors), retention-vs-K curves "
                                               "and provenance, for the LLM and encoder tracks, plus the records.jsonl "
                                               "they were built from (records.jsonl.gz).")
    parser.add_argument("results", nargs="?", help="(deprecated: use --results-dir) results store directory")
    add_report_options(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys

    if args.results and not args.results_dir:
        print("llmtrunc: note: the positional results folder is deprecated, use --results-dir", file=sys.stderr)
        args.results_dir = args.results
    store = results_store(args)
    if not store.root.is_dir():
        raise LLMTruncError(f"results store not found: {store.root}")
    records = [r for r in store.all_records() if not args.model or r.model in args.model]
    present = sorted({r.track for r in records if r.track in getattr(args, "scope", TRACKS)})
    tracks = [t.strip() for t in args.track.split(",")] if args.track else present
    unknown = [t for t in tracks if t not in TRACKS]
    if unknown:
        raise LLMTruncError(f"unknown track {unknown[0]!r}: choose {', '.join(TRACKS)}")
    missing = [t for t in tracks if t not in present]
    if not tracks or missing:
        raise LLMTruncError(f"no {missing[0] + ' ' if missing else ''}results in {store.root}")
    for path in build(records, Path(args.out), tracks):
        print(path)
    return 0
