"""Encoder report: retention-vs-K curves per model and task, and a table at K = 50%.

Retention = score / score of the untruncated embeddings (the K=0 index drop of the same model and
task, which is the full embedding). Random drops are summarised as mean +- std over seeds. PCA
curves use the same baseline, so a PCA point above 1 means the projection beats the full vectors.
`summarise(records)` is the reusable part (for `llmtrunc report`); `build_report` writes the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from llmtrunc.plots import markdown_table, pyplot, save
from llmtrunc.retention import with_baseline
from llmtrunc.files import atomic_write
from llmtrunc.store import recorded_commands

KIND_ORDER = ("first", "last", "random", "pca")
LABELS = {"first": "first K% dropped", "last": "last K% dropped", "random": "random K% (mean ± std)", "pca": "PCA to the same size"}


def encoder_records(records: pd.DataFrame) -> pd.DataFrame:
    if records.empty or "track" not in records:
        return pd.DataFrame()
    return records[records["track"] == "encoder"].copy()


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, metric, kind, K): mean, std and count over seeds, with retention
    against the full embedding (the `none` cell of the same settings, llmtrunc.retention)."""
    df = encoder_records(records)
    if df.empty:
        return pd.DataFrame()
    # latest record of each cell wins if a cell was recomputed
    df = df.sort_values("time").drop_duplicates(["settings_id", "drop", "metric"], keep="last")
    merged = with_baseline(df[df["drop_kind"].isin(("none", *KIND_ORDER))]).rename(columns={"drop_kind": "kind"})
    keys = ["model", "revision", "task", "task_kind", "data", "n_eval", "metric", "main"]
    grouped = (
        merged.groupby(keys + ["kind", "k_percent", "keep_dims"], dropna=False)
        .agg(mean=("value", "mean"), std=("value", "std"), n=("value", "count"), full=("baseline", "first"),
             retention=("retention", "mean"), retention_std=("retention", "std"))
        .reset_index()
    )
    grouped[["std", "retention_std"]] = grouped[["std", "retention_std"]].fillna(0.0)
    return grouped.sort_values(keys + ["kind", "k_percent"]).reset_index(drop=True)


def table_at(summary: pd.DataFrame, k_percent: float = 50.0, main_only: bool = True) -> pd.DataFrame:
    rows = summary[(summary["k_percent"] == k_percent)]
    if main_only:
        rows = rows[rows["main"]]
    out = []
    for (model, task, metric), group in rows.groupby(["model", "task", "metric"], sort=False):
        row = {"model": model, "task": task, "metric": metric, "full": group["full"].iloc[0]}
        for kind in KIND_ORDER:
            match = group[group["kind"] == kind]
            if match.empty:
                continue
            m = match.iloc[0]
            text = f"{m['mean']:.4f}"
            if kind == "random":
                text += f" ± {m['std']:.4f}"
            row[kind] = text
            row[f"{kind}_retention"] = round(float(m["retention"]), 4)
        out.append(row)
    return pd.DataFrame(out)


def plot_model(summary: pd.DataFrame, model: str, path: Path) -> Path:
    plt = pyplot()
    rows = summary[(summary["model"] == model) & summary["main"]]
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        task_rows = rows[rows["task"] == task]
        for kind in KIND_ORDER:
            kr = task_rows[task_rows["kind"] == kind].sort_values("k_percent")
            if kr.empty:
                continue
            line = ax.plot(kr["k_percent"], kr["retention"], marker="o", markersize=3, label=LABELS[kind])[0]
            if kind == "random":
                ax.fill_between(kr["k_percent"], kr["retention"] - kr["retention_std"], kr["retention"] + kr["retention_std"],
                                color=line.get_color(), alpha=0.25)
        metric = task_rows["metric"].iloc[0]
        ax.set_title(f"{task} ({metric}; full {task_rows['full'].iloc[0]:.3f})", fontsize=9)
        ax.set_xlabel("dimensions dropped (K %)")
        ax.set_ylabel("retention (score / full)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{model}: score retention as embedding dimensions are removed", fontsize=10)
    save(fig, path)
    return path


def build_report(records: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """summary.csv, table_k50.csv, one retention figure per model and README.md of the encoder records."""
    records = encoder_records(records)
    summary = summarise(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary_path = out / "summary.csv"
    atomic_write(summary_path, summary.to_csv(index=False))
    written.append(summary_path)
    table = table_at(summary, 50.0)
    table_path = out / "table_k50.csv"
    atomic_write(table_path, table.to_csv(index=False))
    written.append(table_path)
    figures = [plot_model(summary, model, out / f"retention_{model}.png") for model in dict.fromkeys(summary["model"])]
    written.extend(figures)
    main = summary[summary["main"]]
    wide = main.pivot_table(index=["model", "task", "kind"], columns="k_percent", values="mean").round(4).reset_index()
    wide.columns = [c if isinstance(c, str) else f"K={c:g}%" for c in wide.columns]
    first = records.iloc[0]
    tasks = (records.drop_duplicates(["model", "task"])[["model", "task", "task_kind", "split", "n_eval", "dim", "protocol", "limits"]]
             .assign(protocol=lambda d: d["protocol"].astype(str), limits=lambda d: d["limits"].astype(str)))
    counts = records[records["main"]].groupby(["model", "task"]).size().rename("cells").reset_index()
    tasks = tasks.merge(counts, on=["model", "task"], how="left")
    lines = [
        "# Encoder track: retention as embedding dimensions are removed\n",
        f"Generated by `llmtrunc report` from {len(records)} records ({records['run_id'].nunique()} runs, shipped in "
        "records.jsonl.gz).\n",
    ]
    commands = recorded_commands(records)
    if commands:
        lines += ["Commands:\n", "```\n" + "\n".join(commands) + "\n```\n"]
    lines += [
        f"Versions: {first['versions']}; git {', '.join(sorted(set(records['git_hash'])))}.\n",
        "K is the dropped share of dimensions (first/last/random) or of principal components (PCA, fitted on the "
        "corpus / train side only). Retention = score / score of the full embedding. Random: mean ± std over seeds.\n",
        "## Tasks\n", markdown_table(tasks),
        "## Table at K = 50%\n", markdown_table(table),
        "## Main metric by K\n", markdown_table(wide),
        "## Figures\n", *[f"![{p.stem}]({p.name})\n" for p in figures],
    ]
    report_path = out / "README.md"
    atomic_write(report_path, "\n".join(lines))
    written.append(report_path)
    return written
