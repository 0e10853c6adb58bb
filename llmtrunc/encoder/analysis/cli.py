"""Registration of `llmtrunc encoder analyze`."""

from __future__ import annotations

from llmtrunc.errors import LLMTruncError


def register(sub) -> None:
    from llmtrunc.commands.encoder import add_encoder_options
    from llmtrunc.commands.options import add_run_options, add_selection_options

    p = sub.add_parser("analyze", help="outlier dims, anisotropy/collapse, dimension attribution, PCA vs random")
    add_encoder_options(p)
    p.add_argument("--analyses", default="outliers,anisotropy,attribution,pca", help="comma-separated: outliers, anisotropy, attribution, pca")
    add_selection_options(p)  # --k: also the PCA vs random grid
    p.add_argument("--attr-experiments", type=int, default=2, help="classification attribution: MTEB undersampling experiments per removal")
    p.add_argument("--max-rows", type=int, default=5000, help="rows (and positive pairs) sampled for the anisotropy metrics")
    add_run_options(p)
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    from llmtrunc.commands.encoder import encoder_config
    from llmtrunc.commands.options import execute, results_store, selection_options
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
