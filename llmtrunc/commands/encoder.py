"""`llmtrunc encoder ...`: the encoder track (sentence embeddings with dimensions removed).

    llmtrunc encoder eval     --model minilm --tasks scifact,stsb --drop first,last,random,pca --k 0,10,...,90 --seeds 0-9
    llmtrunc encoder analyze  --model minilm --tasks scifact,banking77
    llmtrunc encoder train-simcse --mode sup --steps 60
    llmtrunc encoder report   --results-dir results --out reports/encoder   (= llmtrunc report --track encoder)
    llmtrunc encoder models
"""

from __future__ import annotations

import argparse
import json

from llmtrunc.commands.options import (add_grid_options, add_results_dir, add_run_options, add_selection_options,
                                       execute, results_store, selection_options)
from llmtrunc.encoder.models import DEFAULT_MODEL
from llmtrunc.errors import LLMTruncError

DEFAULT_DROPS = "first,last,random,pca"


def add_encoder_options(p: argparse.ArgumentParser, tasks_default: str = "scifact") -> None:
    """Model, tasks, data and cache flags of every encoder command."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="alias (minilm, mpnet, contriever, e5-large, e5-mistral, "
                   f"paraphrase-minilm, sentence-t5), hub id or local folder (default: {DEFAULT_MODEL}, offline)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--tasks", default=tasks_default, help="comma-separated task names (scifact, banking77, "
                   "tweet_sentiment_extraction, stsb, sickr, sts12..sts16, or MTEB names) or folders (BEIR layout / "
                   f"train.jsonl+test.jsonl) (default {tasks_default})")
    p.add_argument("--data-dir", default=None, help="benchmark data directory (default $LLMTRUNC_DATA_DIR or ../shared/data)")
    add_results_dir(p)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default $LLMTRUNC_CACHE_DIR/embeddings or ./.cache/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--recompute", action="store_true", help="recompute cells already in the results store")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: sentence-transformers' choice)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N items: the first N queries / STS pairs, N evenly spaced test rows")
    p.add_argument("--max-corpus", type=int, default=None, help="retrieval: keep N corpus docs (relevant docs always kept)")
    p.add_argument("--max-train", type=int, default=None, help="classification: N evenly spaced train rows before undersampling; "
                   "STS: first N train pairs for the PCA fit")


def register(subparsers) -> None:
    from llmtrunc.commands.report import add_report_options
    from llmtrunc.commands.report import run as run_report

    parser = subparsers.add_parser("encoder", help="encoder track: truncated sentence embeddings on retrieval, classification, STS")
    sub = parser.add_subparsers(dest="encoder_command", required=True, parser_class=type(parser))
    p = sub.add_parser("eval", help="score a sentence encoder with dimensions removed",
                       description="Score every drop condition (the full embedding always included) and print the score "
                                   "+ retention table; finished cells are reused from the results store.")
    add_encoder_options(p)
    add_grid_options(p, k_default="0,10,...,90", seeds_default="0-9", drop_default=DEFAULT_DROPS)
    add_run_options(p)
    p.add_argument("--json", action="store_true", help="print the main-metric records as JSON lines")
    p.set_defaults(func=cmd_eval)
    register_analyze(sub)
    register_train_simcse(sub)
    p = sub.add_parser("report", help="the encoder reports (llmtrunc report --track encoder,encoder-analysis)")
    add_report_options(p)
    p.set_defaults(func=run_report, results=None, scope=("encoder", "encoder-analysis"))
    sub.add_parser("models", help="list the encoder aliases").set_defaults(func=cmd_models)


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value <= 0:
        raise LLMTruncError(f"{flag} must be positive, got {value}")
    return value


def encoder_config(args, config_class=None, **extra):
    """The EncoderRunConfig (or a subclass) of the shared encoder flags."""
    from llmtrunc.encoder.evaluate import EncoderRunConfig
    from llmtrunc.encoder.tasks import Limits

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise LLMTruncError("no task given")
    limits = Limits(_positive(args.limit, "--limit"), _positive(args.max_corpus, "--max-corpus"),
                    _positive(args.max_train, "--max-train"))
    return (config_class or EncoderRunConfig)(
        model=args.model, tasks=tasks, data_dir=args.data_dir, cache_dir=args.cache_dir,
        batch_size=_positive(args.batch_size, "--batch-size"), device=args.device, revision=args.revision,
        limits=limits, use_cache=not args.no_cache, **extra)


def cmd_eval(args) -> int:
    from llmtrunc.commands.options import grid_specs
    from llmtrunc.encoder.evaluate import EncoderCompute, encoder_cells
    from llmtrunc.tables import print_scores

    specs = grid_specs(args.drop, args.k, args.seeds, args.seed, DEFAULT_DROPS)
    encoder, tasks, cache = encoder_config(args).load()
    store = results_store(args)
    compute = EncoderCompute(encoder, cache, encoder_config(args).limits)
    run_ids = execute(args, encoder_cells(encoder, tasks, specs), compute, store, recompute=args.recompute)
    if run_ids is None:
        return 0
    frame = store.records(run_ids)
    print_scores(frame)
    if args.json:
        for record in frame[frame["main"]].to_dict("records"):
            print(json.dumps({k: record[k] for k in ("model", "task", "drop", "drop_ratio", "seed", "metric", "value")}))
    return 0


def cmd_models(args) -> int:
    from llmtrunc.encoder.models import MODELS

    for spec in MODELS.values():
        prompts = {k: v for k, v in (("query", spec.query_prompt), ("document", spec.document_prompt)) if v}
        print(f"{spec.alias:18} {spec.hub_id:45} {spec.similarity:6} {json.dumps(prompts) if prompts else ''}")
    return 0


def register_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="outlier dims, anisotropy/collapse, dimension attribution, PCA vs random")
    add_encoder_options(p)
    p.add_argument("--analyses", default="outliers,anisotropy,attribution,pca",
                   help="comma-separated: outliers, anisotropy, attribution, pca")
    add_selection_options(p)  # --k: also the PCA vs random grid
    p.add_argument("--attr-experiments", type=int, default=2,
                   help="classification attribution: MTEB undersampling experiments per removal")
    p.add_argument("--max-rows", type=int, default=5000, help="rows (and positive pairs) sampled for the anisotropy metrics")
    add_run_options(p)
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    from llmtrunc.encoder.analysis.run import ANALYSES, AnalysisCompute, AnalyzeConfig, analysis_cells

    analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown or not analyses:
        raise LLMTruncError(f"unknown analysis {(unknown or ['(none)'])[0]!r}: use {', '.join(ANALYSES)}")
    ks, seeds = selection_options(args)
    config = encoder_config(args, AnalyzeConfig, analyses=analyses, ks=ks, seeds=seeds,
                            attr_experiments=args.attr_experiments, max_rows=args.max_rows)
    encoder, tasks, cache = config.load()
    store = results_store(args)
    run_ids = execute(args, analysis_cells(encoder, tasks, config), AnalysisCompute(encoder, cache, config), store,
                      recompute=args.recompute)
    if run_ids is not None:
        print(f"{len(store.all_records(run_ids))} analysis records in {len(run_ids)} cells")
    return 0


def register_train_simcse(sub) -> None:
    p = sub.add_parser("train-simcse", help="SimCSE training (unsup: wiki sentences; sup: SNLI) with metrics over checkpoints")
    p.add_argument("--mode", choices=("unsup", "sup"), default="unsup")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model: {DEFAULT_MODEL} (offline), a hub id "
                   "(bert-base-uncased, google-t5/t5-base) or folder")
    p.add_argument("--out", help="checkpoint folder (default .cache/simcse/MODE)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="default 3e-5 (unsup) / 5e-5 (sup)")
    p.add_argument("--save-steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--n-train", type=int, default=None, help="use the first N sentences / triplets")
    p.add_argument("--eval-seeds", default="0-4", help="random-50%% truncation seeds for the retention")
    p.add_argument("--retrieval-limit", type=int, default=30)
    p.add_argument("--retrieval-corpus", type=int, default=300)
    p.add_argument("--eval-max-seq-length", type=int, default=128)
    p.add_argument("--data-dir", default=None)
    add_results_dir(p)
    p.add_argument("--recompute", action="store_true", help="train again although the store has this run")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_train_simcse)


def cmd_train_simcse(args) -> int:
    from llmtrunc.encoder.simcse import SimCSEConfig, compute, simcse_cell
    from llmtrunc.spec import parse_int_list

    for flag in ("steps", "batch_size", "max_seq_length", "save_steps"):
        if getattr(args, flag) <= 0:
            raise LLMTruncError(f"--{flag.replace('_', '-')} must be positive")
    config = SimCSEConfig(mode=args.mode, model=args.model, out_dir=args.out, steps=args.steps, batch_size=args.batch_size,
                          max_seq_length=args.max_seq_length, learning_rate=args.lr, save_steps=args.save_steps,
                          seed=args.seed, n_train=args.n_train, data_dir=args.data_dir,
                          eval_seeds=parse_int_list(args.eval_seeds, "--eval-seeds"),
                          retrieval_limit=args.retrieval_limit, retrieval_corpus=args.retrieval_corpus,
                          eval_max_seq_length=args.eval_max_seq_length, device=args.device)
    store = results_store(args)
    run_ids = execute(args, [simcse_cell(config)], compute, store, recompute=args.recompute)
    print(f"{len(store.all_records(run_ids))} records; checkpoints under {config.out_dir}")
    return 0
