"""LLM-track report: per model, task x condition scores and retention, floors, curves, provenance.

Written as Markdown and one self-contained HTML page (plots embedded as PNG data URIs). The same
store always gives the same files: rows and columns are sorted and plots carry no timestamps.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from llmtrunc.plots import pyplot, save
from llmtrunc.retention import condition_table, with_baseline

# The paper's Table 3: full / first half removed / last half removed.
PAPER_TABLE3 = pd.DataFrame(
    [("Llama 3.1 8B", "mmlu", "acc", 0.681, 0.580, 0.586), ("Llama 3.1 8B", "squadv2", "best_exact", 51.87, 50.07, 50.07),
     ("Llama 3.1 8B", "gsm8k", "exact_match (strict)", 0.764, 0.009, 0.014),
     ("Qwen 2.5 7B", "mmlu", "acc", 0.718, 0.709, 0.709), ("Qwen 2.5 7B", "squadv2", "best_exact", 50.12, 50.07, 50.07),
     ("Qwen 2.5 7B", "gsm8k", "exact_match (strict)", 0.766, 0.045, 0.011)],
    columns=["model", "task", "metric", "full", "first half removed", "last half removed"])
# Our drop families that are the paper's Table 3 conditions (post-norm).
PAPER_CONDITIONS = {"first:50%": "first half removed", "last:50%": "last half removed"}


def main_records(records: pd.DataFrame) -> pd.DataFrame:
    """Each task's headline metric only (for groups such as mmlu, the group's own row)."""
    return records[records["main"].astype(bool)] if "main" in records else records


def paper_side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of `condition_table` that are Table 3 conditions, next to the paper's score (retention) per model."""
    rows = []
    wanted = table[(table["at"] == "post-norm") & table["drop_family"].isin(list(PAPER_CONDITIONS))]
    for _, row in wanted.iterrows():
        paper = PAPER_TABLE3[PAPER_TABLE3["task"] == row["task"]]
        if paper.empty:
            continue
        condition = PAPER_CONDITIONS[row["drop_family"]]
        entry = {"task": row["task"], "condition": condition, "limit": row["limit"],
                 "this model: score (retention)":
                     f"{row['score']:.4f} ({'-' if pd.isna(row['retention']) else format(row['retention'], '.3f')})"}
        for _, ref in paper.iterrows():
            entry[f"{ref['model']} (paper)"] = f"{ref[condition]:g} ({ref[condition] / ref['full']:.3f})"
        rows.append(entry)
    return pd.DataFrame(rows)


def _fmt(mean, std) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.4f}" if pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def _curve_png(table: pd.DataFrame, records: pd.DataFrame, model: str) -> str | None:
    """Retention vs dropped share K per task and drop kind; None when no K grid was run."""
    merged = with_baseline(main_records(records))
    merged = merged[merged["drop_kind"].isin(["first", "last", "random"])]
    tasks = sorted(t for t, rows in merged.groupby("task") if rows["drop_ratio"].nunique() >= 2)  # a curve needs 2 Ks
    if not tasks:
        return None
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks):
        part = merged[merged["task"] == task]
        for (kind, at), rows in sorted(part.groupby(["drop_kind", "at"])):
            stats = rows.groupby("drop_ratio")["retention"].agg(["mean", "std"]).reset_index().sort_values("drop_ratio")
            ax.errorbar(100 * stats["drop_ratio"], stats["mean"], yerr=stats["std"].fillna(0), marker="o",
                        capsize=3, label=f"{kind} ({at})")
        ax.set(title=task, xlabel="dimensions removed (%)", ylabel="retention")
        ax.legend(fontsize=7)
    fig.suptitle(model)
    return base64.b64encode(save(fig, dpi=90)).decode()


def build_report(records: pd.DataFrame, out: str | Path) -> list[Path]:
    """report.md, report.html and the curves of the LLM records in `records`."""
    from llmtrunc.store import recorded_commands

    records = records[records["track"] == "llm"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, html = ["# llmtrunc report: LLM track", ""], ["<html><head><meta charset='utf-8'><title>llmtrunc report</title>"
                                                       "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
                                                       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
                                                       "</style></head><body><h1>llmtrunc report: LLM track</h1>"]
    md += ["Retention = truncated / baseline (perplexity: baseline / truncated). Retention above floor = "
           "(truncated − floor) / (baseline − floor), with floor = chance for multiple choice and the share of "
           "unanswerable questions for SQuAD v2 best_exact (shown only where the baseline is above its floor); `at floor` marks conditions that score no better "
           "than the floor. Random drops: mean ± std over seeds.", ""]
    for model in sorted(records["model"].unique()):
        part = records[records["model"] == model]
        table = condition_table(part)
        view = pd.DataFrame({
            "task": table["task"], "metric": table["metric"] + " (" + table["filter"] + ")",
            "drop": table["drop_family"], "at": table["at"], "seeds": table["seeds"],
            "baseline": table["baseline"].map(lambda v: f"{v:.4f}"),
            "score": [_fmt(m, s) for m, s in zip(table["score"], table["score_std"])],
            "retention": [_fmt(m, s) for m, s in zip(table["retention"], table["retention_std"])],
            "floor": table["floor"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.4f}"),
            "retention above floor": table["retention_above_floor"].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}"),
            "at floor": table["at_floor"].map({True: "yes", False: ""}),
            "limit": table["limit"],
        })
        md += [f"## {model}", "", view.to_markdown(index=False), ""]
        html += [f"<h2>{model}</h2>", view.to_html(index=False)]
        beside = paper_side_by_side(table)
        if not beside.empty:
            md += ["Side by side with the paper's Table 3 (score, retention in parentheses):", "",
                   beside.to_markdown(index=False), ""]
            html += ["<p>Side by side with the paper's Table 3 (score, retention in parentheses):</p>",
                     beside.to_html(index=False)]
        png = _curve_png(table, part, model)
        if png:
            (out / f"curves_{model}.png").write_bytes(base64.b64decode(png))
            md += [f"![retention vs K](curves_{model}.png)", ""]
            html.append(f"<img src='data:image/png;base64,{png}'/>")
        commands = recorded_commands(part)
        versions = sorted({json.dumps(v, sort_keys=True) for v in part["versions"]})
        hashes = sorted(set(part["git_hash"]))
        md += ["Commands behind these numbers:", "", *[f"    {c}" for c in commands], "",
               f"Versions: {'; '.join(versions)}  ", f"llmtrunc git: {', '.join(hashes)}", ""]
        html += ["<p>Commands:</p><pre>" + "\n".join(commands) + "</pre>",
                 f"<p>Versions: {'; '.join(versions)}<br/>llmtrunc git: {', '.join(hashes)}</p>"]
    md += ["## The paper's Table 3 (reference)", "", PAPER_TABLE3.to_markdown(index=False), ""]
    html += ["<h2>The paper's Table 3 (reference)</h2>", PAPER_TABLE3.to_html(index=False), "</body></html>"]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text("\n".join(html))
    return [out / "report.md", out / "report.html"]
