"""`llmtrunc report RESULTS --out DIR`: Markdown + self-contained HTML from a results store."""

from __future__ import annotations

from llmtrunc.errors import LLMTruncError


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write Markdown/HTML reports from a results store",
                                   description="Tables of scores and retention (with floors), retention-vs-K "
                                               "curves and provenance, for the LLM and encoder tracks.")
    parser.add_argument("results", help="results store directory (as given to --output)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from llmtrunc.report import build_report
    from llmtrunc.store import ResultsStore

    if not Path(args.results).is_dir():
        raise LLMTruncError(f"results store not found: {args.results}")
    records = ResultsStore(args.results).records()
    tracks = set(records["track"]) if "track" in records else set()
    if not tracks:
        raise LLMTruncError(f"no results in {args.results}")
    written = []
    if "llm" in tracks:
        written += build_report(args.results, args.out)
    if "encoder" in tracks:
        from llmtrunc.encoder.report import build_report as build_encoder_report

        written += build_encoder_report(args.results, Path(args.out) / "encoder")
    if "encoder-analysis" in tracks:
        from llmtrunc.encoder.analysis_report import build_report as build_analysis_report

        written += build_analysis_report(args.results, Path(args.out) / "encoder_analyses")
    for path in written:
        print(path)
    return 0
