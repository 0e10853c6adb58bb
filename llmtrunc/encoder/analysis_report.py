"""Report of the encoder analyses (track "encoder-analysis"): one table (CSV + markdown) and one figure each.

Scores of removals are read the way every track reads them: through the records' drop columns, the one baseline
join (llmtrunc.retention.with_baseline, summarised per condition by llmtrunc.tables.condition_table, one analysis
at a time: each analysis cell holds its own baseline) and the one outlier table (llmtrunc.outliers.outlier_table).

    outliers      outlier dims per model/task; score removing them vs removing as many random dims
    anisotropy    uniformity, alignment, IsoScore, Corr Mean for full and random-50% embeddings, with retention
    attribution   sorted single-dim deltas (degrading above 0), and degrading-only / improving-only / random
                  removal curves over K
    pca           PCA vs random over K (retention vs the full embedding)
    simcse        metrics over training steps: STS-B dev Spearman, alignment, uniformity, IsoScore, Corr Mean,
                  and the random-50% retention beside them (the paper's figure)

`build_report(records, out) -> list[Path]` is what `llmtrunc report` calls for this track.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from llmtrunc.files import atomic_write
from llmtrunc.outliers import outlier_table
from llmtrunc.plots import markdown_table, pyplot, save
from llmtrunc.store import recorded_commands
from llmtrunc.tables import condition_table

TRACK = "encoder-analysis"


def analysis_records(records: pd.DataFrame) -> pd.DataFrame:
    if records.empty or "track" not in records:
        return pd.DataFrame()
    df = records[records["track"] == TRACK].copy()
    if df.empty:
        return df
    # the latest run of each (model, task, analysis) wins when an analysis was recomputed
    latest = df.sort_values("time").groupby(["model", "task", "analysis"])["run_id"].last()
    return df[df["run_id"].isin(set(latest))]


def anisotropy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and task, the geometry metrics of the full and of the random-50% embeddings (mean over seeds),
    beside the main score and, for random 50%, its retention from the condition table."""
    rows = []
    names = ["uniformity", "alignment", "isoscore", "isoscore_package", "corr_mean"]
    records = df[df["analysis"] == "anisotropy"]
    table = condition_table(records)
    for (model, task), g in records.groupby(["model", "task"], sort=False):
        for kind, label in (("none", "full"), ("random", "random 50%")):
            c = g[g["drop_kind"] == kind]
            row = {"model": model, "task": task, "embedding": label}
            for name in names:
                v = c[c["metric"] == name]["value"]
                if len(v):
                    row[name] = round(float(v.mean()), 4)
            score = c[c["main"].astype(bool)]
            row["score_metric"] = score["metric"].iloc[0] if len(score) else ""
            row["score"] = round(float(score["value"].mean()), 4) if len(score) else np.nan
            if kind == "random":
                kept = table[(table["model"] == model) & (table["task"] == task)
                             & table["drop_family"].isin(c["drop_family"])]
                if len(kept):
                    row["retention"] = round(float(kept["retention"].iloc[0]), 4)
            rows.append(row)
    return pd.DataFrame(rows)


def attribution_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (model, task), g in df[df["analysis"] == "attribution"].groupby(["model", "task"], sort=False):
        deltas = g[g["metric"].str.startswith("delta_")]
        get = lambda m: g[g["metric"] == m]["value"].iloc[0]  # noqa: E731
        rows.append({"model": model, "task": task, "metric": deltas["metric"].iloc[0][len("delta_"):], "dim": int(g["dim"].iloc[0]),
                     "full": get("attribution_base"), "n_degrading": int(get("n_degrading")), "n_improving": int(get("n_improving")),
                     "n_neutral": int(get("n_neutral")), "max_gain": deltas["value"].max(), "max_loss": deltas["value"].min(),
                     "seconds": g[g["metric"] == "attribution_base"]["seconds"].iloc[0], "method": g["method"].iloc[0]})
    return pd.DataFrame(rows)


def curves(df: pd.DataFrame, analysis: str) -> pd.DataFrame:
    """The condition table of one analysis (retention of the main metric, mean and std over seeds), each condition
    with its removal kind (`condition`: pca, random, degrading, improving) and K, read from its drop columns."""
    records = df[df["analysis"] == analysis]
    table = condition_table(records)
    drops = records.drop_duplicates("drop_family").set_index("drop_family")
    table = table.assign(condition=table["drop_family"].map(drops["drop_kind"]),
                         k_percent=table["drop_family"].map(drops["drop_ratio"]).mul(100).round(6))
    return table.sort_values(["model", "task", "condition", "k_percent"]).reset_index(drop=True)


def _curve_figure(c: pd.DataFrame, title: str, path: Path) -> Path:
    plt = pyplot()
    pairs = list(dict.fromkeys(zip(c["model"], c["task"])))
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4.6 * max(1, len(pairs)), 3.6), squeeze=False)
    for ax, (model, task) in zip(axes[0], pairs):
        sub = c[(c["model"] == model) & (c["task"] == task)]
        for condition, rows in sub.groupby("condition"):
            line = ax.plot(rows["k_percent"], rows["retention"], marker="o", markersize=3, label=condition)[0]
            if (rows["seeds"] > 1).any():
                ax.fill_between(rows["k_percent"], rows["retention"] - rows["retention_std"],
                                rows["retention"] + rows["retention_std"], color=line.get_color(), alpha=0.2)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{model} {task} ({sub['metric'].iloc[0]}, full {sub['baseline'].iloc[0]:.3f})", fontsize=9)
        ax.set_xlabel("dimensions removed (K %)")
        ax.set_ylabel("retention (score / full)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save(fig, path)
    return path


def _attribution_figure(df: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    sel = df[(df["analysis"] == "attribution") & df["metric"].str.startswith("delta_")]
    pairs = list(dict.fromkeys(zip(sel["model"], sel["task"])))
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4.6 * max(1, len(pairs)), 3.6), squeeze=False)
    for ax, (model, task) in zip(axes[0], pairs):
        rows = sel[(sel["model"] == model) & (sel["task"] == task)].sort_values("dim_index")
        delta = rows["value"].to_numpy()
        order = np.sort(delta)[::-1]
        ax.bar(np.arange(len(order)), order, width=1.0, color=np.where(order > 0, "tab:red", "tab:blue"))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"{model} {task}: {int((delta > 0).sum())} degrading / {int((delta < 0).sum())} improving", fontsize=9)
        ax.set_xlabel("dimensions, sorted by score change on removal")
        ax.set_ylabel(f"Δ {rows['metric'].iloc[0][len('delta_'):]} when removed alone")
        ax.grid(alpha=0.3)
    save(fig, path)
    return path


def _bar_figure(table: pd.DataFrame, columns: list[str], title: str, path: Path) -> Path:
    plt = pyplot()
    cols = [c for c in columns if c in table]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), squeeze=False)
    labels = [f"{r['task']}\n{r['embedding']}" if "embedding" in table else r["task"] for _, r in table.iterrows()]
    for ax, col in zip(axes[0], cols):
        ax.bar(range(len(table)), table[col].astype(float), color="tab:gray")
        ax.set_xticks(range(len(table)), labels, fontsize=6, rotation=45, ha="right")
        ax.set_title(col, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    save(fig, path)
    return path


def _outlier_figure(table: pd.DataFrame, path: Path) -> Path:
    """The outlier table's retentions: outliers removed vs as many random dims (mean ± std over the seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, (_, row) in enumerate(table.iterrows()):
        ax.bar(i - 0.2, row["outliers_retention"], 0.4, color="tab:red", label="outlier dims removed" if i == 0 else None)
        ax.bar(i + 0.2, row["random_retention"], 0.4, yerr=row["random_retention_std"] if row["random_seeds"] > 1 else None,
               color="tab:gray", label="same number random" if i == 0 else None)
        ax.text(i, 0.02, f"n={int(row['n_outliers'])}", ha="center", fontsize=7)
    ax.set_xticks(range(len(table)), [f"{r['model']}\n{r['task']}" for _, r in table.iterrows()], fontsize=7)
    ax.set_ylabel("retention")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=7)
    ax.set_title("Removing outlier dimensions vs random dimensions", fontsize=10)
    save(fig, path)
    return path


SIMCSE_PANELS = [("stsb_dev_spearman", "STS-B dev Spearman"), ("alignment", "alignment (lower = closer)"),
                 ("uniformity", "uniformity (lower = more uniform)"), ("isoscore", "IsoScore"), ("corr_mean", "Corr Mean"),
                 ("retention", "retention at random 50%")]


def simcse_table(df: pd.DataFrame) -> pd.DataFrame:
    sel = df[df["analysis"].str.startswith("simcse") & (df["condition"] == "checkpoint")]
    if sel.empty:
        return pd.DataFrame()
    wide = sel.pivot_table(index=["model", "mode", "step"], columns="metric", values="value").reset_index()
    keep = ["model", "mode", "step", "stsb_dev_spearman", "alignment", "uniformity", "isoscore", "corr_mean", "sts_retention_random50",
            "retrieval_retention_random50", "scifact_ndcg_at_10"]
    wide["step"] = wide["step"].astype(int)
    return wide[[c for c in keep if c in wide]].sort_values(["mode", "step"]).round(4)


def _simcse_figure(table: pd.DataFrame, losses: pd.DataFrame, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SIMCSE_PANELS) + 1, figsize=(3.0 * (len(SIMCSE_PANELS) + 1), 3.2), squeeze=False)
    for mode, rows in table.groupby("mode"):
        for ax, (metric, label) in zip(axes[0], SIMCSE_PANELS):
            if metric == "retention":
                ax.plot(rows["step"], rows["sts_retention_random50"], marker="o", label=f"{mode} STS")
                ax.plot(rows["step"], rows["retrieval_retention_random50"], marker="s", ls="--", label=f"{mode} SciFact")
            else:
                ax.plot(rows["step"], rows[metric], marker="o", label=mode)
            ax.set_title(label, fontsize=8)
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
    ax = axes[0][-1]
    for mode, rows in losses.groupby("mode"):
        ax.plot(rows["step"], rows["value"], label=mode)
    ax.set_title("train loss (InfoNCE, τ=0.05)", fontsize=8)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    for a in axes[0]:
        a.legend(fontsize=6)
    fig.suptitle("SimCSE training: quality and anisotropy metrics beside the truncation retention", fontsize=10)
    save(fig, path, dpi=120)
    return path


def build_report(records: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    df = analysis_records(records)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections: list[str] = ["# Encoder analyses: why random dimension removal hurts so little\n",
                           f"Generated by `llmtrunc report` from {len(df)} records ({df['run_id'].nunique()} runs, "
                           "shipped in records.jsonl.gz). Versions: "
                           f"{df['versions'].iloc[0]}; git {', '.join(sorted(set(df['git_hash'].astype(str))))}.\n"]
    command_lines = recorded_commands(df)
    if command_lines:
        sections += ["Commands:\n", "```\n" + "\n".join(command_lines) + "\n```\n"]

    def table_out(name: str, table: pd.DataFrame, heading: str, note: str, figure: Path | None) -> None:
        path = out / f"{name}.csv"
        atomic_write(path, table.to_csv(index=False))
        written.append(path)
        sections.extend([f"## {heading}\n", note + "\n", markdown_table(table)])
        if figure is not None:
            written.append(figure)
            sections.append(f"![{figure.stem}]({figure.name})\n")

    kinds = set(df["analysis"])
    if "outliers" in kinds:
        t = outlier_table(df[df["analysis"] == "outliers"])
        table_out("outliers", t, "Outlier dimensions", "Dims whose mean value over the fit side (corpus / train) lies beyond ±3 std "
                  "of the mean vector's values; removing them (drop `outliers`) vs removing as many random dims "
                  "(`random:outliers`, mean ± std over seeds). With no outlier, nothing is removed: retention 1.",
                  _outlier_figure(t, out / "outliers.png"))
    if "anisotropy" in kinds:
        t = anisotropy_table(df)
        table_out("anisotropy", t, "Anisotropy and dimensional collapse", "Uniformity log E exp(-2||zi-zj||²) on unit vectors "
                  "(lower = more uniform), alignment E||zx-zy||² on positive pairs, IsoScore (own implementation; "
                  "isoscore_package = the IsoScore 2.0.1 package, must agree), Corr Mean = mean |Pearson r| between dims. "
                  "Random 50%: mean over seeds; retention = score / full score.",
                  _bar_figure(t, ["uniformity", "alignment", "isoscore", "corr_mean"], "Anisotropy metrics", out / "anisotropy.png"))
    if "attribution" in kinds:
        t = attribution_table(df)
        table_out("attribution", t, "Dimension attribution", "Score change when each dimension alone is removed: degrading dims "
                  "(removal improves the score, Δ > 0) and improving dims (Δ < 0).", _attribution_figure(df, out / "attribution.png"))
        c = curves(df, "attribution-selection")
        wide = c.pivot_table(index=["model", "task", "condition"], columns="k_percent", values="retention").round(4).reset_index()
        wide.columns = [x if isinstance(x, str) else f"K={x:g}%" for x in wide.columns]
        table_out("attribution_selection", wide, "Removing only degrading vs only improving dimensions",
                  "Retention after removing the K% most degrading dims (largest Δ first), the K% most improving dims, or K% random "
                  "dims (mean over seeds). The selection uses the evaluated split itself, as the paper does, so the degrading curve "
                  "is an in-sample upper bound.", _curve_figure(c, "Degrading vs improving vs random removal", out / "attribution_selection.png"))
    if "pca" in kinds:
        c = curves(df, "pca")
        wide = c.pivot_table(index=["model", "task", "condition"], columns="k_percent", values="retention").round(4).reset_index()
        wide.columns = [x if isinstance(x, str) else f"K={x:g}%" for x in wide.columns]
        table_out("pca_vs_random", wide, "PCA vs random removal", "Retention of the main metric; PCA fitted on the corpus / train "
                  "side only, keeping the top d − floor(K d) components.", _curve_figure(c, "PCA vs random", out / "pca_vs_random.png"))
    if any(k.startswith("simcse") for k in kinds):
        t = simcse_table(df)
        losses = df[df["analysis"].str.startswith("simcse") & (df["metric"] == "train_loss")]
        settings = df[df["analysis"].str.startswith("simcse")].drop_duplicates("run_id")
        note = "Metrics at step 0 (base model) and every checkpoint (reloaded from disk). Settings: " + "; ".join(
            f"{r['mode']}: " + ", ".join(f"{k}={r['settings'][k]}" for k in ("model", "steps", "batch_size", "max_seq_length", "lr",
                                                                              "save_steps", "n_train", "eval_max_seq_length", "retrieval_limit",
                                                                              "retrieval_corpus") if k in r["settings"])
            + f", train examples={int(r['n_train'])}, train time {r['train_seconds']}s" for _, r in settings.iterrows()) + "."
        table_out("simcse", t, "SimCSE training: metrics over checkpoints", note, _simcse_figure(t, losses, out / "simcse.png"))
    path = out / "README.md"
    atomic_write(path, "\n".join(sections))
    written.append(path)
    return written
