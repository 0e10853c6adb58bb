"""Registration of `llmtrunc encoder analyze` (and `llmtrunc encoder train-simcse`, see llmtrunc/encoder/simcse.py)."""

from __future__ import annotations

from llmtrunc.errors import LLMTruncError


def register_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="outlier dims, anisotropy/collapse, dimension attribution, PCA vs random")
    p.add_argument("--model", default="minilm", help="alias, hub id or local folder (default minilm, offline)")
    p.add_argument("--revision", default=None)
    p.add_argument("--tasks", default="scifact", help="comma-separated tasks (scifact, banking77, stsb, ...) or folders")
    p.add_argument("--analyses", default="outliers,anisotropy,attribution,pca", help="comma-separated: outliers, anisotropy, attribution, pca")
    p.add_argument("--k", default="10,20,...,90", help="dropped percents for the attribution selection and PCA vs random")
    p.add_argument("--seeds", default="0-4", help="random-baseline seeds")
    p.add_argument("--attr-experiments", type=int, default=2, help="classification attribution: MTEB undersampling experiments per removal")
    p.add_argument("--max-rows", type=int, default=5000, help="rows (and positive pairs) sampled for the anisotropy metrics")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--recompute", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-corpus", type=int, default=None)
    p.add_argument("--max-train", type=int, default=None)
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    from llmtrunc.encoder.analysis.run import AnalyzeConfig, run_analyses
    from llmtrunc.spec import parse_int_list
    from llmtrunc.encoder.tasks import Limits

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    if not tasks:
        raise LLMTruncError("no task given")
    ks = parse_int_list(args.k, "--k")
    if any(not 0 < k < 100 for k in ks):
        raise LLMTruncError("--k values must lie in 1..99")
    config = AnalyzeConfig(model=args.model, tasks=tasks, analyses=analyses, ks=ks, seeds=parse_int_list(args.seeds, "--seeds"),
                           data_dir=args.data_dir, cache_dir=args.cache_dir, results_dir=args.results_dir, batch_size=args.batch_size,
                           device=args.device, revision=args.revision, limits=Limits(args.limit, args.max_corpus, args.max_train),
                           attr_experiments=args.attr_experiments, max_rows=args.max_rows, recompute=args.recompute, use_cache=not args.no_cache)
    records = run_analyses(config)
    print(f"{len(records)} analysis records")
    return 0


def register(sub) -> None:
    """Both subcommands (`analyze`, `train-simcse`); the `encoder` command calls this through SUBCOMMANDS."""
    from llmtrunc.encoder import simcse

    register_analyze(sub)
    simcse.register(sub)
