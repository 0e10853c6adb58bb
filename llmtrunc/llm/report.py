"""LLM-track report that leads with the answer: a summary per model, a retention heatmap, retention-vs-K
curves with the chance line, the paper comparison as a figure, then the full table and the provenance.

Written as Markdown and one self-contained HTML page (figures as PNG data URIs, the full table sortable
by a few lines of inline script: no network). Rebuilt byte-identical from the same records: rows are
sorted, figures carry no timestamps, statistics use fixed seeds.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmtrunc.files import atomic_write
from llmtrunc.plots import pyplot, save
from llmtrunc.outliers import outlier_table
from llmtrunc.retention import retention
from llmtrunc.tables import condition_table, interval, mean_std

# The paper's Table 3: full / first half removed / last half removed.
PAPER_TABLE3 = pd.DataFrame(
    [("Llama 3.1 8B", "mmlu", "acc", 0.681, 0.580, 0.586), ("Llama 3.1 8B", "squadv2", "best_exact", 51.87, 50.07, 50.07),
     ("Llama 3.1 8B", "gsm8k", "exact_match (strict)", 0.764, 0.009, 0.014),
     ("Qwen 2.5 7B", "mmlu", "acc", 0.718, 0.709, 0.709), ("Qwen 2.5 7B", "squadv2", "best_exact", 50.12, 50.07, 50.07),
     ("Qwen 2.5 7B", "gsm8k", "exact_match (strict)", 0.766, 0.045, 0.011)],
    columns=["model", "task", "metric", "full", "first half removed", "last half removed"])
# Our drop families that are the paper's Table 3 conditions (post-norm).
PAPER_CONDITIONS = {"first:50%": "first half removed", "last:50%": "last half removed"}
KIND_ORDER = ["first", "last", "random", "top", "bottom", "outliers", "indices"]
HEADLINE = ["first:50%", "last:50%", "random:50%"]  # the conditions the summary leads with


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Conditions in reading order: task, limit, position, kind (first, last, random ...), share removed."""
    kind = table["drop_family"].str.split(":").str[0]
    share = pd.to_numeric(table["drop_family"].str.extract(r":([\d.]+)%")[0], errors="coerce")
    keys = pd.DataFrame({"task": table["task"], "limit": table["limit"].astype(str), "at": table["at"],
                         "kind": kind.map(lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER)),
                         "share": share.fillna(-1), "drop": table["drop_family"]})
    return table.loc[keys.sort_values(list(keys.columns), kind="stable").index].reset_index(drop=True)


def label(row) -> str:
    return row["drop_family"] if row["at"] in ("post-norm", "-") else f"{row['drop_family']} ({row['at']})"


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
            entry[f"{ref['model']} (paper)"] = f"{ref[condition]:g} ({retention(ref[condition], ref['full']):.3f})"
        rows.append(entry)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> list[str]:
    """One line per task: baseline, the headline conditions with their intervals, floors, what is indistinguishable."""
    lines = []
    for (task, limit), part in table.groupby(["task", "limit"], sort=False, dropna=False):
        first = part.iloc[0]
        n = f", {int(limit)} items" if pd.notna(limit) and float(limit) >= 1 else ""
        floor = f", floor {first['floor']:.3g}" if pd.notna(first["floor"]) else ""
        said = []
        for drop in HEADLINE:
            row = part[(part["drop_family"] == drop) & (part["at"] == "post-norm")]
            if not row.empty:
                r = row.iloc[0]
                seeds = f" over {r['seeds']} seeds" if r["seeds"] > 1 else ""
                ci = f" {interval(r)}" if interval(r) != "-" else ""
                said.append(f"{drop} keeps {r['retention']:.2f}{ci}{seeds}" if pd.notna(r["retention"])
                            else f"{drop}: retention undefined (baseline 0)")
        at_floor = [label(r) for _, r in part.iterrows() if r["at_floor"]]
        same = [label(r) for _, r in part.iterrows() if r.get("indistinguishable") is True]
        text = f"**{task}** ({first['metric']}{n}; baseline {first['baseline']:.3g}{floor}): " + ("; ".join(said) or
                                                                                                "no half-removal conditions")
        if at_floor:
            text += f". At the floor: {', '.join(at_floor)}"
        if same:
            text += f". Indistinguishable from the baseline: {', '.join(same)}"
        lines.append(f"- {text}.")
    return lines


def heatmap(table: pd.DataFrame, model: str) -> bytes:
    """Retention, task (rows) x condition (columns); hatched cells score at or below the floor."""
    plt = pyplot()
    table = table.assign(condition=[label(r) for _, r in table.iterrows()],
                         row=[f"{t} ({m})" if pd.isna(lim) else f"{t} ({m}, {lim:g})"
                              for t, m, lim in zip(table["task"], table["metric"], table["limit"].astype(float))])
    rows, cols = list(dict.fromkeys(table["row"])), list(dict.fromkeys(table["condition"]))
    grid = np.full((len(rows), len(cols)), np.nan)
    floors = np.zeros_like(grid, dtype=bool)
    for _, r in table.iterrows():
        grid[rows.index(r["row"]), cols.index(r["condition"])] = r["retention"]
        floors[rows.index(r["row"]), cols.index(r["condition"])] = bool(r["at_floor"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(cols) + 3), 0.5 * len(rows) + 2.2))
    image = ax.imshow(np.clip(grid, 0, 1.2), cmap="RdYlGn", vmin=0, vmax=1.2, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isnan(grid[i, j]):
                continue
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
            if floors[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, color="black"))
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.03, label="retention")
    ax.set_title(f"{model}: retention (hatched: at or below the floor)", fontsize=9)
    return save(fig, dpi=100)


def curves(table: pd.DataFrame, model: str) -> bytes | None:
    """Retention vs share removed per task and kind (random: mean ± std over seeds), with the chance line."""
    plt = pyplot()
    kind = table["drop_family"].str.split(":").str[0]
    share = pd.to_numeric(table["drop_family"].str.extract(r":([\d.]+)%")[0], errors="coerce")
    data = table.assign(kind=kind, share=share)[kind.isin(["first", "last", "random", "top", "bottom"]) & share.notna()]
    tasks = [t for t, part in data.groupby(["task", "limit"], sort=False) if part["share"].nunique() >= 2]
    if not tasks:
        return None
    ncols = min(3, len(tasks))
    fig, axes = plt.subplots(-(-len(tasks) // ncols), ncols, figsize=(4.2 * ncols, 3.3 * -(-len(tasks) // ncols)),
                             squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, (task, limit) in zip(axes.flat, tasks):
        part = data[(data["task"] == task) & (data["limit"].astype(str) == str(limit))]
        for (k, at), rows in part.groupby(["kind", "at"], sort=True):
            rows = rows.sort_values("share")
            ax.errorbar(rows["share"], rows["retention"], yerr=rows["retention_std"].fillna(0), marker="o", ms=3,
                        capsize=2, label=f"{k}" + ("" if at == "post-norm" else f" ({at})"))
        first = part.iloc[0]
        if pd.notna(first["floor"]) and first["baseline"]:
            ax.axhline(retention(first["floor"], first["baseline"]), color="grey", ls="--", lw=0.8, label="chance / floor")
        ax.axhline(1.0, color="black", lw=0.5)
        ax.set(title=f"{task} ({first['metric']})", xlabel="dimensions removed (%)", ylabel="retention")
        ax.legend(fontsize=6)
    fig.suptitle(model, fontsize=10)
    return save(fig, dpi=90)


def paper_figure(table: pd.DataFrame, model: str) -> bytes | None:
    """The paper's Table 3 retention for Llama 3.1 8B and Qwen 2.5 7B next to this model's, per task and half."""
    plt = pyplot()
    ours = table[(table["at"] == "post-norm") & table["drop_family"].isin(list(PAPER_CONDITIONS))
                 & table["task"].isin(PAPER_TABLE3["task"])]
    if ours.empty:
        return None
    bars = []  # (group label, series, value)
    for (task, drop), row in ours.groupby(["task", "drop_family"], sort=True):
        half = PAPER_CONDITIONS[drop]
        group = f"{task}\n{half.replace(' removed', '')}"
        for _, ref in PAPER_TABLE3[PAPER_TABLE3["task"] == task].iterrows():
            bars.append((group, f"{ref['model']} (paper)", retention(ref[half], ref["full"])))
        bars.append((group, model, row["retention"].iloc[0]))
    groups, series = list(dict.fromkeys(b[0] for b in bars)), list(dict.fromkeys(b[1] for b in bars))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(groups) + 2), 3.4))
    width = 0.8 / len(series)
    for s, name in enumerate(series):
        values = [next((v for g2, n, v in bars if g2 == g and n == name), np.nan) for g in groups]
        ax.bar(np.arange(len(groups)) + (s - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.axhline(1.0, color="black", lw=0.5)
    ax.set_xticks(range(len(groups)), groups, fontsize=7)
    ax.set_ylabel("retention")
    ax.set_title("The paper's Table 3 conditions: retention of the full model's score", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, dpi=90)


def outlier_view(records: pd.DataFrame) -> pd.DataFrame:
    """The outlier experiment (llmtrunc.outliers): the outlier dimensions removed vs as many random ones."""
    table = outlier_table(records)
    return pd.DataFrame({
        "task": table["task"], "metric": table["metric"], "at": table["at"], "outliers": table["n_outliers"],
        "dims": table["outlier_dims"], "baseline": table["baseline"].map(lambda v: f"{v:.4f}"),
        "outliers removed: retention": table["outliers_retention"].map(lambda v: f"{v:.3f}"),
        "as many random: retention": [mean_std(m, s) for m, s in zip(table["random_retention"],
                                                                      table["random_retention_std"])],
        "random seeds": table["random_seeds"].map(lambda v: "-" if pd.isna(v) else f"{v:g}"),
    })


def attribution_frames(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`llmtrunc attribute` records -> (one row per task: baseline acc and how many single dimensions degrade
    or improve it when removed, the strongest of each; the selection comparison: acc after removing the K%
    most degrading / most improving / random dimensions, random as mean ± std over the seeds)."""
    rows, selection = [], []
    for (task, limit), part in records.groupby(["task", "limit"], sort=True, dropna=False):
        def value(metric, condition):
            return part[(part["metric"] == metric) & (part["condition"] == condition)]
        single = value("delta_acc", "single").sort_values("value", kind="stable")
        top = lambda rs: ", ".join(f"{int(j)} ({v:+.3f})" for j, v in zip(rs["dim_index"], rs["value"]))  # noqa: E731
        rows.append({"task": task, "limit": limit, "acc": f"{value('acc', 'full')['value'].iloc[0]:.4f}",
                     **{w: int(value(f"n_{w}", w)["value"].iloc[0]) for w in ("degrading", "improving", "neutral")},
                     "most degrading (Δacc when removed)": top(single.iloc[::-1].head(5)),
                     "most improving": top(single.head(5))})
        acc = part[(part["metric"] == "acc") & (part["condition"] != "full")]
        for k, at_k in acc.groupby("k_percent", sort=True):
            of = lambda c: at_k[at_k["condition"] == c]["value"]  # noqa: E731
            selection.append({"task": task, "limit": limit, "K%": int(k), "degrading removed": of("degrading").iloc[0],
                              "improving removed": of("improving").iloc[0], "random": of("random").mean(),
                              "random std": of("random").std(ddof=1) if len(of("random")) > 1 else 0.0})
    return pd.DataFrame(rows), pd.DataFrame(selection)


def attribution_figure(selection: pd.DataFrame, model: str) -> bytes:
    """Accuracy vs K% removed: the most degrading, most improving and random dimensions, per task."""
    plt = pyplot()
    tasks = list(dict.fromkeys(selection["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        part = selection[selection["task"] == task]
        ax.plot(part["K%"], part["degrading removed"], marker="o", ms=3, label="most degrading removed")
        ax.plot(part["K%"], part["improving removed"], marker="o", ms=3, label="most improving removed")
        ax.errorbar(part["K%"], part["random"], yerr=part["random std"], marker="o", ms=3, capsize=2, label="random")
        ax.set(title=f"{task} (acc, in-sample selection)", xlabel="dimensions removed (%)", ylabel="acc")
        ax.legend(fontsize=6)
    fig.suptitle(model, fontsize=10)
    return save(fig, dpi=90)


def full_table(table: pd.DataFrame) -> pd.DataFrame:
    p = table["p_value"] if "p_value" in table else pd.Series(np.nan, index=table.index)
    same = table["indistinguishable"] if "indistinguishable" in table else pd.Series(None, index=table.index)
    return pd.DataFrame({
        "task": table["task"], "metric": table["metric"] + " (" + table["filter"] + ")", "drop": table["drop_family"],
        "at": table["at"], "seeds": table["seeds"], "baseline": table["baseline"].map(lambda v: f"{v:.4f}"),
        "score": [mean_std(m, s) for m, s in zip(table["score"], table["score_std"])],
        "retention": [mean_std(m, s) for m, s in zip(table["retention"], table["retention_std"])],
        "95% CI": [interval(r) for _, r in table.iterrows()],
        "p": p.map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"), "≈ baseline": same.map({True: "yes", False: ""}),
        "floor": table["floor"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.4f}"),
        "retention above floor": table["retention_above_floor"].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}"),
        "at floor": table["at_floor"].map({True: "yes", False: ""}),
        "limit": table["limit"].map(lambda v: "-" if pd.isna(v) else f"{v:g}"),
    }).fillna("")


SORTABLE = """<script>
// Click a header to sort its table (again to reverse); #sort=COLUMN sorts the first table on load.
function sortBy(table, col, dir) {
  const rows = [...table.tBodies[0].rows];
  const key = r => { const t = r.cells[col].textContent.trim(); const n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1) * dir; });
  rows.forEach(r => table.tBodies[0].appendChild(r));
}
document.querySelectorAll("table.sortable").forEach(table => {
  [...table.tHead.rows[0].cells].forEach((th, col) => th.addEventListener("click", () => {
    th.dataset.dir = th.dataset.dir === "1" ? "-1" : "1"; sortBy(table, col, +th.dataset.dir); }));
});
const wanted = decodeURIComponent(location.hash).match(/^#sort=(.+)$/);
const first = document.querySelector("table.sortable");
if (wanted && first) {
  const col = [...first.tHead.rows[0].cells].findIndex(th => th.textContent.trim() === wanted[1]);
  if (col >= 0) sortBy(first, col, 1);
}
</script>"""
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}table{border-collapse:collapse;"
         "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}th{background:#f3f3f3;cursor:pointer}"
         "img{max-width:100%}")


def _html_table(frame: pd.DataFrame, sortable: bool = False) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    attributes = ' class="sortable"' if sortable else ""
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


INTRO = ("Retention = truncated / baseline (perplexity: baseline / truncated), with a 95% interval from a paired "
         "bootstrap over the items (random drops: the interval over the seeds); p from a paired test (McNemar for "
         "accuracy-type metrics, sign-flip permutation otherwise); ≈: indistinguishable from the baseline (p ≥ "
         "0.05 and the interval of the difference holds 0). Floor = chance for multiple choice and the share of "
         "unanswerable questions for SQuAD v2 best_exact; retention above floor = (truncated − floor) / "
         "(baseline − floor), only where the baseline is above its floor.")
OUTLIER_NOTE = ("Outlier dimensions of the final hidden state (the ±3σ rule on the calibration text's mean "
                "activations, llmtrunc/profile.py) removed, against as many random dimensions (random:outliers, "
                "mean ± std over the seeds). If the outliers carried the model, removing them would cost more.")
ATTRIBUTION_NOTE = ("`llmtrunc attribute`: the change in accuracy when each single dimension is removed at post-norm "
                    "(degrading: removing it raises accuracy), then the K% most degrading, most improving and random "
                    "dimensions removed together. Selected on the evaluated items themselves, as the paper does: "
                    "the degrading curve is an in-sample upper bound.")


@dataclass
class Figure:
    name: str  # the PNG's file name
    title: str
    png: bytes


@dataclass
class ModelReport:
    """Everything the report shows for one model, computed once; `markdown` and `html_page` only lay it out."""

    model: str
    summary: list[str]
    figures: list[Figure]
    beside: pd.DataFrame  # side by side with the paper's Table 3 (empty: none of its conditions)
    outliers: pd.DataFrame  # the outlier experiment (empty: not run)
    attribution: tuple[pd.DataFrame, pd.DataFrame, Figure] | None  # counts, selection view, figure
    conditions: pd.DataFrame  # all conditions
    commands: list[str]
    versions: list[str]
    hashes: list[str]

    def all_figures(self) -> list[Figure]:
        return [*self.figures, *([self.attribution[2]] if self.attribution else [])]


def model_report(part: pd.DataFrame, attribution: pd.DataFrame, model: str) -> ModelReport:
    """One model's summary, figures and tables from its LLM records and its attribution records."""
    from llmtrunc.store import recorded_commands

    table = ordered(condition_table(part))
    figures = [Figure(f"{name}_{model}.png", title, png) for name, title, png in (
        ("heatmap", "Retention by task and condition", heatmap(table, model)),
        ("curves", "Retention vs dimensions removed", curves(table, model)),
        ("paper", "The paper's Table 3, as retention", paper_figure(table, model))) if png is not None]
    own = None
    if not attribution.empty:
        counts, selection = attribution_frames(attribution)
        view = selection.assign(**{c: selection[c].map(lambda v: f"{v:.4f}") for c in
                                   ("degrading removed", "improving removed", "random", "random std")})
        own = (counts, view, Figure(f"attribution_{model}.png", "Attribution selection",
                                    attribution_figure(selection, model)))
    behind = pd.concat([part, attribution])
    return ModelReport(model, summary(table), figures, paper_side_by_side(table), outlier_view(part), own,
                       full_table(table), recorded_commands(behind),
                       sorted({json.dumps(v, sort_keys=True) for v in behind["versions"]}),
                       sorted(set(behind["git_hash"])))


def markdown(reports: list[ModelReport]) -> str:
    """report.md: the figures as links to the PNGs beside it."""
    md = ["# llmtrunc report: LLM track", "", INTRO, ""]
    for r in reports:
        md += [f"## {r.model}", "", "### Summary", "", *r.summary, ""]
        for figure in r.figures:
            md += [f"### {figure.title}", "", f"![{figure.title}]({figure.name})", ""]
        if not r.beside.empty:
            md += ["### Side by side with the paper's Table 3", "", "Score (retention in parentheses):", "",
                   r.beside.to_markdown(index=False), ""]
        if not r.outliers.empty:
            md += ["### The outlier experiment", "", OUTLIER_NOTE, "", r.outliers.to_markdown(index=False), ""]
        if r.attribution is not None:
            counts, view, figure = r.attribution
            md += ["### Per-dimension attribution", "", ATTRIBUTION_NOTE, "", counts.to_markdown(index=False), "",
                   view.to_markdown(index=False), "", f"![{figure.title}]({figure.name})", ""]
        md += ["### All conditions", "", r.conditions.to_markdown(index=False), ""]
        md += ["### Provenance", "", "Commands behind these numbers:", "", *[f"    {c}" for c in r.commands], "",
               f"Versions: {'; '.join(r.versions)}  ", f"llmtrunc git: {', '.join(r.hashes)}", ""]
    md += ["## The paper's Table 3 (reference)", "", PAPER_TABLE3.to_markdown(index=False), ""]
    return "\n".join(md)


def _html_image(figure: Figure) -> str:
    return f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{base64.b64encode(figure.png).decode()}'/>"


def html_page(reports: list[ModelReport]) -> str:
    """report.html: one self-contained page, the figures inline, the full tables sortable."""
    page = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmtrunc report</title><style>{STYLE}</style>"
            "</head><body><h1>llmtrunc report: LLM track</h1>", f"<p>{html.escape(INTRO)}</p>"]
    for r in reports:
        page += [f"<h2>{html.escape(r.model)}</h2><h3>Summary</h3><ul>",
                 *[f"<li>{html.escape(line[2:]).replace('**', '')}</li>" for line in r.summary], "</ul>"]
        for figure in r.figures:
            page += [f"<h3>{html.escape(figure.title)}</h3>", _html_image(figure)]
        if not r.beside.empty:
            page += ["<h3>Side by side with the paper's Table 3</h3>", _html_table(r.beside)]
        if not r.outliers.empty:
            page += ["<h3>The outlier experiment</h3>", f"<p>{html.escape(OUTLIER_NOTE)}</p>", _html_table(r.outliers)]
        if r.attribution is not None:
            counts, view, figure = r.attribution
            page += ["<h3>Per-dimension attribution</h3>", f"<p>{html.escape(ATTRIBUTION_NOTE)}</p>",
                     _html_table(counts), _html_table(view), _html_image(figure)]
        page += ["<h3>All conditions</h3><p>Click a column to sort.</p>", _html_table(r.conditions, sortable=True)]
        page += ["<h3>Provenance</h3><p>Commands behind these numbers:</p><pre>"
                 + html.escape("\n".join(r.commands)) + "</pre>",
                 f"<p>Versions: {html.escape('; '.join(r.versions))}<br/>llmtrunc git: {', '.join(r.hashes)}</p>"]
    page += ["<h2>The paper's Table 3 (reference)</h2>", _html_table(PAPER_TABLE3), SORTABLE, "</body></html>"]
    return "\n".join(page)


def build_report(records: pd.DataFrame, out: str | Path) -> list[Path]:
    """report.md, report.html and their figures from the LLM records in `records` (attribution is shown beside
    a model's evaluations)."""
    analyses = records[(records["track"] == "llm-analysis") & (records.get("analysis") == "attribution")]
    records = records[records["track"] == "llm"]
    reports = [model_report(records[records["model"] == model], analyses[analyses["model"] == model], model)
               for model in sorted(records["model"].unique())]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = [figure for r in reports for figure in r.all_figures()]
    for figure in figures:
        atomic_write(out / figure.name, figure.png)
    atomic_write(out / "report.md", markdown(reports))
    atomic_write(out / "report.html", html_page(reports))
    return [out / "report.md", out / "report.html", *(out / figure.name for figure in figures)]
