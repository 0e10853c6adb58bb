"""`llmtrunc encoder ...`: the encoder track (sentence embeddings with dimensions removed).

    llmtrunc encoder eval    --model minilm --tasks scifact,stsb --drop first,last,random,pca --k 0,10,...,90 --seeds 0-9
    llmtrunc encoder report  --results-dir results --out reports/encoder
    llmtrunc encoder models

Other encoder subcommands plug in through `SUBCOMMANDS` (module path -> `register(encoder_subparsers)`)
or by calling `encoder_subparsers()` after `register`; each sets `func` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import json

from llmtrunc.errors import LLMTruncError

# Extra encoder subcommands: modules exposing register(subparsers) for the `encoder` parser.
SUBCOMMANDS: list[str] = ["llmtrunc.encoder.analysis.cli"]  # analyze, train-simcse
_SUBPARSERS: list[argparse._SubParsersAction] = []


def encoder_subparsers() -> argparse._SubParsersAction:
    """The `encoder` parser's subparsers object (after `register`), for adding more subcommands."""
    if not _SUBPARSERS:
        raise RuntimeError("llmtrunc.commands.encoder.register has not run yet")
    return _SUBPARSERS[-1]


def register(subparsers) -> None:
    parser = subparsers.add_parser("encoder", help="encoder track: truncated sentence embeddings on retrieval, classification, STS")
    sub = parser.add_subparsers(dest="encoder_command", required=True, parser_class=type(parser))
    _SUBPARSERS.append(sub)
    _register_eval(sub)
    _register_report(sub)
    _register_models(sub)
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)


def _register_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a sentence encoder with dimensions removed")
    p.add_argument("--model", default="minilm", help="alias (minilm, mpnet, contriever, e5-large, e5-mistral, paraphrase-minilm, "
                   "sentence-t5), hub id or local folder (default: minilm, offline)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--tasks", default="scifact", help="comma-separated task names (scifact, banking77, tweet_sentiment_extraction, "
                   "stsb, sickr, sts12..sts16, or MTEB names) or folders (BEIR layout / train.jsonl+test.jsonl)")
    p.add_argument("--drop", action="append", default=None, help="drop specs (repeatable, comma-separated): first:K, last:K, "
                   "random:K[@SEED], indices:FILE, pca:K, none; a bare family (first, last, random, pca) is crossed with --k. "
                   "Default: first,last,random,pca")
    p.add_argument("--k", default="0,10,...,90", help="dropped percents for bare families (default 0,10,...,90)")
    p.add_argument("--seeds", default="0-9", help="seeds for random specs without @SEED (default 0-9)")
    p.add_argument("--data-dir", default=None, help="benchmark data directory (default $LLMTRUNC_DATA_DIR or ../shared/data)")
    p.add_argument("--results-dir", default=None, help="results store (default $LLMTRUNC_RESULTS_DIR or ./results)")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default $LLMTRUNC_CACHE_DIR/embeddings or ./.cache/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--recompute", action="store_true", help="recompute cells already in the results store")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: sentence-transformers' choice)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N items: the first N queries / STS pairs, N evenly spaced test rows")
    p.add_argument("--max-corpus", type=int, default=None, help="retrieval: keep N corpus docs (relevant docs always kept)")
    p.add_argument("--max-train", type=int, default=None, help="classification: N evenly spaced train rows before undersampling; "
                   "STS: first N train pairs for the PCA fit")
    p.add_argument("--json", action="store_true", help="print the main-metric records as JSON lines")
    p.set_defaults(func=cmd_eval)


def _register_report(sub) -> None:
    p = sub.add_parser("report", help="retention-vs-K curves and the table at 50%% from the results store")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--out", default="reports/encoder", help="output folder for figures, CSV and markdown")
    p.add_argument("--model", action="append", default=None, help="restrict to these model aliases")
    p.add_argument("--command-line", default=None, help="the eval command to quote in the report")
    p.set_defaults(func=cmd_report)


def _register_models(sub) -> None:
    p = sub.add_parser("models", help="list the encoder aliases")
    p.set_defaults(func=cmd_models)


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value <= 0:
        raise LLMTruncError(f"{flag} must be positive, got {value}")
    return value


def cmd_eval(args) -> int:
    from llmtrunc.encoder.evaluate import EvalConfig, grid_specs, run_eval
    from llmtrunc.spec import parse_int_list
    from llmtrunc.encoder.tasks import Limits

    ks = parse_int_list(args.k, "--k")
    seeds = parse_int_list(args.seeds, "--seeds")
    specs = grid_specs(args.drop or ["first,last,random,pca"], ks, seeds)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise LLMTruncError("no task given")
    limits = Limits(_positive(args.limit, "--limit"), _positive(args.max_corpus, "--max-corpus"), _positive(args.max_train, "--max-train"))
    config = EvalConfig(model=args.model, tasks=tasks, specs=specs, data_dir=args.data_dir, cache_dir=args.cache_dir,
                        results_dir=args.results_dir, batch_size=_positive(args.batch_size, "--batch-size"), device=args.device,
                        revision=args.revision, limits=limits, use_cache=not args.no_cache, recompute=args.recompute)
    outcome = run_eval(config)
    print(f"{outcome.written_runs} runs written, {outcome.reused_runs} reused; {outcome.encoded_texts} texts encoded; "
          f"encode {outcome.seconds['encode']:.1f}s, score {outcome.seconds['score']:.1f}s")
    if args.json:
        for record in outcome.records:
            if record["main"]:
                print(json.dumps({k: record[k] for k in ("model", "task", "drop", "k", "seed", "metric", "value")}))
    return 0


def cmd_report(args) -> int:
    from llmtrunc.encoder.evaluate import default_results_dir
    from llmtrunc.encoder.report import build_report

    written = build_report(args.results_dir or default_results_dir(), args.out, models=args.model, command_line=args.command_line)
    for path in written:
        print(path)
    return 0


def cmd_models(args) -> int:
    from llmtrunc.encoder.models import MODELS

    for spec in MODELS.values():
        prompts = {k: v for k, v in (("query", spec.query_prompt), ("document", spec.document_prompt)) if v}
        print(f"{spec.alias:18} {spec.hub_id:45} {spec.similarity:6} {json.dumps(prompts) if prompts else ''}")
    return 0
