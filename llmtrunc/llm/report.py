"""LLM-track report that leads with the answer: per model three sentences computed from the records (what
survives half the dimensions removed, what collapses, what the outlier dimensions do, each with its
interval), then the figures (retention heatmap, retention-vs-K curves with the chance line, the paper
comparison, the attribution selection), then the tables (a compact summary, the paper side by side, the
outlier experiment, attribution, every condition) and the provenance with each command's wall time.
Tasks whose baseline is not clearly above chance stay in the tables, marked, and out of the figures.

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
from llmtrunc.store import recorded_commands
from llmtrunc.tables import above_floor_cell, condition_table, format_p, interval, mean_std

# The paper's Table 3: full / first half removed / last half removed.
PAPER_TABLE3 = pd.DataFrame(
    [("Llama 3.1 8B", "mmlu", "acc", 0.681, 0.580, 0.586), ("Llama 3.1 8B", "squadv2", "best_exact", 51.87, 50.07, 50.07),
     ("Llama 3.1 8B", "gsm8k", "exact_match (strict)", 0.764, 0.009, 0.014),
     ("Qwen 2.5 7B", "mmlu", "acc", 0.718, 0.709, 0.709), ("Qwen 2.5 7B", "squadv2", "best_exact", 50.12, 50.07, 50.07),
     ("Qwen 2.5 7B", "gsm8k", "exact_match (strict)", 0.766, 0.045, 0.011)],
    columns=["model", "task", "metric", "full", "first half removed", "last half removed"])
# Our drop families that are the paper's Table 3 conditions (post-norm).
PAPER_CONDITIONS = {"first:50%": "first half removed", "last:50%": "last half removed"}
FIGURE_KINDS = ("heatmap", "curves", "paper", "attribution")  # the report's figure files: KIND_model.png
KIND_ORDER = ["first", "last", "random", "top", "bottom", "outliers", "indices"]
HEADLINE = ["first:50%", "last:50%", "random:50%"]  # the conditions the answer leads with
HALF_NAMES = {"first:50%": "first half", "last:50%": "last half", "random:50%": "random half"}
SUMMARY_CONDITIONS = {"first:50%": "first half", "last:50%": "last half", "random:50%": "random half",
                      "outliers": "outliers", "random:outliers": "as many random"}


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


def paper_side_by_side(table: pd.DataFrame, baselines: Baselines) -> pd.DataFrame:
    """Rows of `condition_table` that are Table 3 conditions, next to the paper's score (retention) per model; a task
    whose baseline sits at its floor is marked: its retention cannot show the paper's contrast."""
    rows = []
    wanted = table[(table["at"] == "post-norm") & table["drop_family"].isin(list(PAPER_CONDITIONS))]
    chance = baselines.at_chance(wanted)
    for index, row in wanted.iterrows():
        paper = PAPER_TABLE3[PAPER_TABLE3["task"] == row["task"]]
        if paper.empty:
            continue
        condition = PAPER_CONDITIONS[row["drop_family"]]
        entry = {"task": row["task"], "condition": condition, "limit": row["limit"],
                 "this model: score (retention)":
                     f"{row['score']:.4f} ({'-' if pd.isna(row['retention']) else format(row['retention'], '.3f')})"}
        for _, ref in paper.iterrows():
            entry[f"{ref['model']} (paper)"] = f"{ref[condition]:g} ({retention(ref[condition], ref['full']):.3f})"
        entry["note"] = f"at chance (baseline {row['baseline']:.4g}, floor {row['floor']:.4g})" if chance[index] else ""
        rows.append(entry)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Baselines:
    """Per (task, metric, limit) of the untouched model: how many items it was scored on, and whether its score is
    clearly above its floor (score minus 1.96 standard errors above chance; the standard error is lm-eval's, else
    the per-item values'). A task at chance has retention that is a ratio of noise: figures leave it out."""

    n_items: dict[tuple, int]
    chance: set[tuple]

    @classmethod
    def of(cls, records: pd.DataFrame) -> Baselines:
        base = records[(records["drop_kind"] == "none") & records["main"].astype(bool)
                       & (records["subtask"].fillna(records["task"]) == records["task"])]
        n_items, chance = {}, set()
        for _, r in base.iterrows():
            key = cls.key(r["task"], r["metric"], r["limit"])
            values = r.get("items")
            values = np.asarray(values, dtype=float) if isinstance(values, list) and values else None
            n = len(values) if values is not None else r.get("n_samples")
            if n is not None and pd.notna(n):
                n_items[key] = int(n)
            err = r.get("stderr")
            if (err is None or pd.isna(err)) and values is not None and len(values) > 1:
                err = float(values.std(ddof=1) / np.sqrt(len(values)))
            floor = r.get("floor")
            if floor is not None and pd.notna(floor) and r["value"] - 1.96 * (0.0 if err is None or pd.isna(err)
                                                                              else err) <= floor:
                chance.add(key)
        return cls(n_items, chance)

    @staticmethod
    def key(task, metric, limit) -> tuple:
        return (task, metric, None if limit is None or pd.isna(limit) else float(limit))

    def at_chance(self, table: pd.DataFrame) -> pd.Series:
        return pd.Series([self.key(*k) in self.chance for k in zip(table["task"], table["metric"], table["limit"])],
                         index=table.index, dtype=bool)

    def items(self, row) -> str:
        n = self.n_items.get(self.key(row["task"], row["metric"], row["limit"]))
        return str(n) if n is not None else "-" if pd.isna(row["limit"]) else f"{row['limit']:g}"


def retention_cell(row) -> str:
    if row is None or pd.isna(row["retention"]):
        return "-"
    ci = interval(row)
    return f"{row['retention']:.3f}" + ("" if ci == "-" else f" {ci}")


def above_chance(row) -> bool:
    """Whether the task has a floor above 0 (chance of multiple choice, SQuAD v2's unanswerable share): there raw
    retention overstates what survives, and retention above the floor says it."""
    return row is not None and pd.notna(row["floor"]) and row["floor"] > 0


def summary_table(table: pd.DataFrame, baselines: Baselines) -> pd.DataFrame:
    """The compact summary: per task, metric and position, retention (95% interval) of the headline conditions,
    and below it, where the task has a floor above 0, the retention above that floor; tasks at chance marked."""
    rows = []
    for (task, metric, limit, at), part in table.groupby(["task", "metric", "limit", "at"], sort=False, dropna=False):
        first = part.iloc[0]
        of = {r["drop_family"]: r for _, r in part.iterrows()}
        shared = {"task": task, "metric": metric, "items": baselines.items(first), "at": at,
                  "baseline": f"{first['baseline']:.4g}", "floor": "-" if pd.isna(first["floor"]) else f"{first['floor']:.3g}"}
        note = "at chance: not in the figures" if baselines.key(task, metric, limit) in baselines.chance else ""
        rows.append({**shared, "retention": "raw", **{name: retention_cell(of.get(drop))
                                                       for drop, name in SUMMARY_CONDITIONS.items()}, "note": note})
        if above_chance(first):
            rows.append({**shared, "retention": "above floor",
                         **{name: "-" if of.get(drop) is None else above_floor_cell(of[drop])
                            for drop, name in SUMMARY_CONDITIONS.items()}, "note": note})
    frame = pd.DataFrame(rows)
    return frame if frame.empty else frame.sort_values(["note", "task", "at"], kind="stable").reset_index(drop=True)


def answer(table: pd.DataFrame, outliers: pd.DataFrame, baselines: Baselines, model: str) -> list[str]:
    """Three sentences a reader can check against the figures and tables: what survives half the dimensions
    removed, what collapses, and what the outlier dimensions do; each number with its 95% interval."""
    halves = table[(table["at"] == "post-norm") & table["drop_family"].isin(HEADLINE) & ~baselines.at_chance(table)]
    said = []
    groups = [part.set_index("drop_family") for _, part in
              halves.groupby(["task", "metric", "limit"], sort=True, dropna=False) if part["retention"].notna().any()]

    def sentence(part: pd.DataFrame, verb: str) -> str:
        first = part.iloc[0]
        above = above_chance(first) and part["retention_above_floor"].notna().any()
        cell = above_floor_cell if above else retention_cell
        drops = [d for d in HEADLINE if d in part.index]
        kept = [f"{cell(part.loc[d])} ({HALF_NAMES[d]}" + (f", {part.loc[d, 'seeds']} seeds)"
                                                           if part.loc[d, "seeds"] > 1 else ")") for d in drops]
        said = f"With half of its final hidden state zeroed, {model} {verb} {', '.join(kept)} of its {first['task']} "
        if above:
            raw = ", ".join(f"{part.loc[d, 'retention']:.3f}" for d in drops)
            return said + (f"{first['metric']} above chance ({first['floor']:g}; baseline {first['baseline']:.4g}, "
                           f"{baselines.items(first)} items); of the raw score it keeps {raw}.")
        why = "; no interval: the metric is not a mean of per-item scores, so there are none to resample" \
            if all(interval(part.loc[d]) == "-" for d in drops) else ""
        return said + f"{first['metric']} (baseline {first['baseline']:.4g}, {baselines.items(first)} items{why})."

    def measure(part: pd.DataFrame) -> float:
        """What a sentence states: retention above chance where the task has a floor above 0, else retention."""
        above = above_chance(part.iloc[0]) and part["retention_above_floor"].notna().any()
        return part["retention_above_floor" if above else "retention"].mean()

    if groups:
        mean = [measure(part) for part in groups]
        best, worst = int(np.argmax(mean)), int(np.argmin(mean))
        said.append(sentence(groups[best], "keeps"))
        if worst != best:
            said.append(sentence(groups[worst], "keeps only"))
    found = outliers[outliers["at"] == "post-norm"] if not outliers.empty else outliers
    found = found[~baselines.at_chance(found) & found["random_retention"].notna()] if not found.empty else found
    if not found.empty:
        # the best-powered test: a paired test first, then the most items, then the largest cost
        found = found.assign(tested=found["outliers_p"].notna(), n=[
            baselines.n_items.get(baselines.key(*k), 0) for k in zip(found["task"], found["metric"], found["limit"])])
        r = found.sort_values(["tested", "n", "outliers_retention"], ascending=[False, False, True]).iloc[0]
        spread = 2 * (r["random_retention_std"] if pd.notna(r["random_retention_std"]) else 0)
        low, high = (r["outliers_low"], r["outliers_high"]) if pd.notna(r["outliers_low"]) else \
            (r["outliers_retention"], r["outliers_retention"])
        verdict = ("they matter more than random dimensions" if high < r["random_retention"] - spread
                   else "they matter less than random dimensions" if low > r["random_retention"] + spread
                   else "no different from random dimensions")
        ci = f" [{low:.3f}, {high:.3f}]" if pd.notna(r["outliers_low"]) else ""
        p = format_p(r["outliers_p"], 2)
        test = f", {r['outliers_test']} p {'' if p.startswith('<') else '= '}{p} against the baseline" if r["tested"] else ""
        said.append(f"Removing its {int(r['n_outliers'])} outlier dimensions ({r['outlier_dims']}) keeps "
                    f"{r['outliers_retention']:.3f}{ci} of {r['task']} {r['metric']} ({r['n']} items{test}); as many "
                    f"random dimensions keep {r['random_retention']:.3f} ± {r['random_retention_std']:.3f} over "
                    f"{r['random_seeds']:g} seeds: {verdict}.")
    return said


def cannot_show(table: pd.DataFrame, baselines: Baselines, model: str) -> list[str]:
    """One sentence on what the model cannot show: the paper's Table 3 tasks it does at its floor (their collapse
    cannot show from there), and, where LAMBADA ran, that a teacher-forced next-word match stands in for exact
    generation."""
    paper = table[table["task"].isin(PAPER_TABLE3["task"])].drop_duplicates(["task", "metric", "limit"])
    floored = paper[baselines.at_chance(paper)].sort_values("task")
    if floored.empty:
        return []
    listed = [f"{r['task']} {r['baseline']:.4g} (floor {r['floor']:.4g})" for _, r in floored.iterrows()]
    listed = ", ".join(listed[:-1]) + f" and {listed[-1]}" if len(listed) > 1 else listed[0]
    said = f"{model} scores {listed}: at chance there, it cannot show the paper's Table 3 collapse"
    lambada = table[table["task"] == "lambada_openai"]
    if not lambada.empty and not baselines.at_chance(lambada).all():
        said += ("; lambada_openai, a teacher-forced next-word match (each passage's last word predicted greedily "
                 "from the true text, nothing generated freely), stands in for exact generation")
    return [said + "."]


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
    tasks = [part for _, part in data.groupby(["task", "limit"], sort=False, dropna=False)  # NaN limit: full set
             if part["share"].nunique() >= 2]
    if not tasks:
        return None
    ncols = min(3, len(tasks))
    fig, axes = plt.subplots(-(-len(tasks) // ncols), ncols, figsize=(4.2 * ncols, 3.3 * -(-len(tasks) // ncols)),
                             squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, part in zip(axes.flat, tasks):
        for (k, at), rows in part.groupby(["kind", "at"], sort=True):
            rows = rows.sort_values("share")
            ax.errorbar(rows["share"], rows["retention"], yerr=rows["retention_std"].fillna(0), marker="o", ms=3,
                        capsize=2, label=f"{k}" + ("" if at == "post-norm" else f" ({at})"))
        first = part.iloc[0]
        if pd.notna(first["floor"]) and first["baseline"]:
            ax.axhline(retention(first["floor"], first["baseline"]), color="grey", ls="--", lw=0.8, label="chance / floor")
        ax.axhline(1.0, color="black", lw=0.5)
        ax.set(title=f"{first['task']} ({first['metric']})", xlabel="dimensions removed (%)", ylabel="retention")
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


def outlier_view(table: pd.DataFrame) -> pd.DataFrame:
    """The outlier experiment (llmtrunc.outliers.outlier_table): the outlier dimensions removed vs as many random
    ones, with the removal's bootstrap interval and paired test against the baseline."""
    return pd.DataFrame({
        "task": table["task"], "metric": table["metric"], "at": table["at"], "outliers": table["n_outliers"],
        "dims": table["outlier_dims"], "baseline": table["baseline"].map(lambda v: f"{v:.4f}"),
        "outliers removed: retention": table["outliers_retention"].map(lambda v: f"{v:.3f}"),
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "-" for lo, hi in
                   zip(table["outliers_low"], table["outliers_high"])],
        "p": [f"{format_p(p)} ({t})" if pd.notna(p) else "-" for p, t in zip(table["outliers_p"], table["outliers_test"])],
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
        "p": p.map(format_p), "≈ baseline": same.map({True: "yes", False: ""}),
        "floor": table["floor"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.4f}"),
        "retention above floor (95% CI)": [above_floor_cell(r) for _, r in table.iterrows()],
        "at floor": table["at_floor"].map({True: "yes", False: ""}),
        "baseline at chance": table["chance"].map({True: "yes", False: ""}),
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
         "img{max-width:100%}.answer{font-size:17px;line-height:1.5;background:#f6f8fa;padding:.6em 1em;"
         "border-left:4px solid #2a7ae2}")


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
         "(baseline − floor), only where the baseline is above its floor, its interval from the same bootstrap. "
         "p < 1e-300: below what a float holds.")
OUTLIER_NOTE = ("Outlier dimensions of the final hidden state (the ±3σ rule on the calibration text's mean "
                "activations, llmtrunc/profile.py) removed, against as many random dimensions (random:outliers, "
                "mean ± std over the seeds). If the outliers carried the model, removing them would cost more.")
SUMMARY_NOTE = ("Retention of the headline conditions (95% interval; random: mean over the seeds, interval over "
                "the seeds): raw (truncated / baseline) and, where the task has a floor above 0, above the floor "
                "((truncated − floor) / (baseline − floor): what survives of the margin over chance). A task whose untouched score is not clearly above its floor (chance, or SQuAD v2's "
                "unanswerable share: baseline - 1.96 standard errors at or below it) is marked and left out of "
                "the figures: its retention is a ratio of noise.")
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
    answer: list[str]  # what survives, what collapses, what the outliers do; what the model cannot show
    summary: pd.DataFrame  # the headline conditions per task and position
    figures: list[Figure]
    beside: pd.DataFrame  # side by side with the paper's Table 3 (empty: none of its conditions)
    outliers: pd.DataFrame  # the outlier experiment (empty: not run)
    attribution: tuple[pd.DataFrame, pd.DataFrame, Figure] | None  # counts, selection view, figure
    conditions: pd.DataFrame  # all conditions
    commands: list[str]  # each with the wall time its records span
    versions: list[str]
    hashes: list[str]

    def all_figures(self) -> list[Figure]:
        return [*self.figures, *([self.attribution[2]] if self.attribution else [])]


def model_report(part: pd.DataFrame, attribution: pd.DataFrame, model: str) -> ModelReport:
    """One model's summary, figures and tables from its LLM records and its attribution records."""
    table = ordered(condition_table(part))
    baselines = Baselines.of(part)
    shown = table[~baselines.at_chance(table)]  # figures: tasks clearly above their floor only
    figures = [Figure(f"{name}_{model}.png", title, png) for name, title, png in (
        ("heatmap", "Retention by task and condition", heatmap(shown, model) if not shown.empty else None),
        ("curves", "Retention vs dimensions removed", curves(shown, model) if not shown.empty else None),
        ("paper", "The paper's Table 3, as retention", paper_figure(shown, model) if not shown.empty else None))
        if png is not None]
    own = None
    if not attribution.empty:
        counts, selection = attribution_frames(attribution)
        view = selection.assign(**{c: selection[c].map(lambda v: f"{v:.4f}") for c in
                                   ("degrading removed", "improving removed", "random", "random std")})
        own = (counts, view, Figure(f"attribution_{model}.png", "Attribution selection",
                                    attribution_figure(selection, model)))
    behind = pd.concat([part, attribution])
    experiment = outlier_table(part)
    return ModelReport(model, answer(table, experiment, baselines, model) + cannot_show(table, baselines, model),
                       summary_table(table, baselines), figures, paper_side_by_side(table, baselines),
                       outlier_view(experiment), own,
                       full_table(table.assign(chance=baselines.at_chance(table))), timed_commands(behind),
                       sorted({json.dumps(v, sort_keys=True) for v in behind["versions"]}),
                       sorted(set(behind["git_hash"])))


def timed_commands(records: pd.DataFrame) -> list[str]:
    """Each command line behind the records, with the wall time its cells span (the first cell's start to the
    last cell's end; the model load before the first cell is not in it)."""
    out = []
    for command in recorded_commands(records):
        part = records[records["command"] == command]
        end = pd.to_datetime(part["time"])
        start = end - pd.to_timedelta(part["seconds"].astype(float), unit="s")
        out.append(f"{command}    # {(end.max() - start.min()).total_seconds() / 60:.1f} min")
    return out


def markdown(reports: list[ModelReport]) -> str:
    """report.md: per model the answer, the figures (links to the PNGs beside it), then the tables."""
    md = ["# llmtrunc report: LLM track", ""]
    for r in reports:
        md += [f"## {r.model}", "", " ".join(r.answer) or "No condition scored above chance.", ""]
        for figure in r.all_figures():
            md += [f"### {figure.title}", "", f"![{figure.title}]({figure.name})", ""]
        md += ["### Summary", "", SUMMARY_NOTE, "", r.summary.to_markdown(index=False), "", INTRO, ""]
        if not r.beside.empty:
            md += ["### Side by side with the paper's Table 3", "", "Score (retention in parentheses):", "",
                   r.beside.to_markdown(index=False), ""]
        if not r.outliers.empty:
            md += ["### The outlier experiment", "", OUTLIER_NOTE, "", r.outliers.to_markdown(index=False), ""]
        if r.attribution is not None:
            counts, view, _ = r.attribution
            md += ["### Per-dimension attribution", "", ATTRIBUTION_NOTE, "", counts.to_markdown(index=False), "",
                   view.to_markdown(index=False), ""]
        md += ["### All conditions", "", r.conditions.to_markdown(index=False), ""]
        md += ["### Provenance", "", "Commands behind these numbers (with the wall time their cells span):", "",
               *[f"    {c}" for c in r.commands], "",
               f"Versions: {'; '.join(r.versions)}  ", f"llmtrunc git: {', '.join(r.hashes)}", ""]
    md += ["## The paper's Table 3 (reference)", "", PAPER_TABLE3.to_markdown(index=False), ""]
    return "\n".join(md)


def _html_image(figure: Figure) -> str:
    return f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{base64.b64encode(figure.png).decode()}'/>"


def html_page(reports: list[ModelReport]) -> str:
    """report.html: one self-contained page, the figures inline, the full tables sortable."""
    page = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmtrunc report</title><style>{STYLE}</style>"
            "</head><body><h1>llmtrunc report: LLM track</h1>"]
    for r in reports:
        page += [f"<h2>{html.escape(r.model)}</h2>",
                 f"<p class='answer'>{html.escape(' '.join(r.answer) or 'No condition scored above chance.')}</p>"]
        for figure in r.all_figures():
            page += [f"<h3>{html.escape(figure.title)}</h3>", _html_image(figure)]
        page += ["<h3>Summary</h3>", f"<p>{html.escape(SUMMARY_NOTE)}</p>", _html_table(r.summary),
                 f"<p>{html.escape(INTRO)}</p>"]
        if not r.beside.empty:
            page += ["<h3>Side by side with the paper's Table 3</h3>", _html_table(r.beside)]
        if not r.outliers.empty:
            page += ["<h3>The outlier experiment</h3>", f"<p>{html.escape(OUTLIER_NOTE)}</p>", _html_table(r.outliers)]
        if r.attribution is not None:
            counts, view, _ = r.attribution
            page += ["<h3>Per-dimension attribution</h3>", f"<p>{html.escape(ATTRIBUTION_NOTE)}</p>",
                     _html_table(counts), _html_table(view)]
        page += ["<h3>All conditions</h3><p>Click a column to sort.</p>", _html_table(r.conditions, sortable=True)]
        page += ["<h3>Provenance</h3><p>Commands behind these numbers (with the wall time their cells span):</p><pre>"
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
    for stale in out.glob("*.png"):  # an earlier build's figure this one no longer draws
        if stale.name.split("_")[0] in FIGURE_KINDS and stale.name not in {figure.name for figure in figures}:
            stale.unlink()
    for figure in figures:
        atomic_write(out / figure.name, figure.png)
    atomic_write(out / "report.md", markdown(reports))
    atomic_write(out / "report.html", html_page(reports))
    return [out / "report.md", out / "report.html", *(out / figure.name for figure in figures)]
