"""One record schema for every track, and the cell key that names what a record depends on.

A `Record` is one number -- one metric of one task under one drop condition -- with everything
that produced it. The LLM track, the encoder track, the analyses and SimCSE all write the same
fields under the same names, so one pandas query spans the tracks; what only one track has
(lm-eval's sample counts, an encoder's similarity, an analysis's condition) goes in `extra`
and is written beside the common fields. Every track builds its records with `RecordBuilder`, which
applies one rule (`Record.of`): a field named like a Record field is that field, anything else is extra.

A cell is the unit of work and storage (a task under one drop at one position, or one analysis).
`cell_key` fingerprints everything that changes its numbers -- settings, drop, position, the
content of an indices file -- and its hash is the run id, so a cache can never serve a stale cell.
`settings_id` is the hash of the same key without drop and position: a truncated record and its
baseline share it, which is how retention finds the baseline in every track.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from llmtrunc import provenance
from llmtrunc.files import digest, file_digest, slug
from llmtrunc.spec import DropSpec, Mask

TRACKS = ("llm", "encoder", "encoder-analysis", "llm-analysis")


def drop_key(spec: DropSpec) -> str:
    """The drop as the cell key names it: an indices file by its content, so editing it makes a new cell."""
    return f"indices@sha256:{file_digest(spec.path)}" if spec.kind == "indices" else spec.name


NOTHING = DropSpec("none")


def cell_key(settings: Mapping[str, Any], spec: DropSpec = NOTHING, at: str = "-",
             calibration: Mapping[str, Any] | None = None,
             when_dropped: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that changes a cell's numbers. With nothing dropped (the default: a baseline, an analysis, a
    training run) the position is moot: one baseline serves every position. `when_dropped`: settings that
    change the numbers only when something is dropped (how vLLM writes the drop into the weights), so a
    baseline's key never holds them. A profile-based drop (outliers, top:K ...) also depends on the
    calibration its profile comes from (`calibration`: its settings and data hash); no other cell's key
    holds it, so adding a calibration never renames a stored cell."""
    dropped = spec.kind != "none"
    key = {**settings, "drop": drop_key(spec), "at": at if dropped else "-"}
    if dropped:
        key.update(when_dropped or {})
    if spec.needs_profile:
        if calibration is None:
            raise ValueError(f"the cell key of {spec.name} needs its calibration")
        key["calibration"] = dict(calibration)
    return key


def settings_id(settings: Mapping[str, Any]) -> str:
    return digest(dict(settings))


def run_id(key: Mapping[str, Any], *label_parts: str) -> str:
    """Readable prefix + hash of the cell key: the directory name of a cell in the results store."""
    label = "__".join(slug(p) for p in label_parts if p)
    return f"{label}__{digest(dict(key))}" if label else digest(dict(key))


@dataclass
class Record:
    """One metric value and its provenance; `to_json` is one line of a records.jsonl."""

    run_id: str
    track: str
    model: str
    task: str
    metric: str
    value: float
    settings_id: str = ""
    model_id: str | None = None  # what the model is: Hub id, package==version, a file or folder as given (no install path)
    revision: str | None = None
    subtask: str | None = None  # a group's member (mmlu subjects); the task itself otherwise
    filter: str = "none"  # lm-eval's filter of the metric (gsm8k: strict-match ...)
    stderr: float | None = None
    main: bool = True  # the task's headline metric (what tables and reports lead with)
    higher_is_better: bool | None = True
    floor: float | None = None  # chance (multiple choice), the unanswerable share (SQuAD v2 best_exact)
    drop: str = "none"
    drop_family: str = "none"  # the drop without its seed: random draws group by it
    drop_kind: str = "none"  # DropSpec.variant: random!outliers and random:outliers apart from random
    drop_ratio: float | None = None
    seed: int | None = None
    dropped_indices: list[int] | None = None
    n_dropped: int | None = None
    dim: int | None = None
    at: str = "-"
    num_fewshot: int | None = None
    limit: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_hash: str = ""
    command: str = ""
    time: str = ""
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.subtask = self.subtask or self.task

    def to_json(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        clash = set(self.extra) & set(row)
        if clash:
            raise ValueError(f"extra fields shadow common ones: {sorted(clash)}")
        return {**row, **self.extra}

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Record:
        """The record of a flat row: a key named like a Record field is that field, every other key is extra."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in row.items() if k in names}, extra={k: v for k, v in row.items() if k not in names})

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Record:
        """A stored row, of this schema or of the per-track schemas before it (see `LEGACY_KEYS`)."""
        return cls.of(_migrate(dict(row)))


class RecordBuilder:
    """The records of one cell: what they all share is given once, then each call makes one record.

        record = RecordBuilder(cell.run_id, "encoder", settings, model="minilm", task="scifact", similarity="cosine")
        record("ndcg_at_10", 0.61, main=True, k_percent=50)

    `settings` (the cell's settings without drop and position) gives `settings_id`; the provenance stamp
    (versions, git hash, command, time) is taken once per cell; keyword fields of the builder and of each call
    are split by `Record.of` (a call's fields win over the shared ones)."""

    def __init__(self, run_id: str, track: str, settings: Mapping[str, Any], /, **shared: Any):
        self.shared = {"run_id": run_id, "track": track, "settings_id": settings_id(settings), **provenance.stamp(),
                       **shared}

    def __call__(self, metric: str, value: float, /, **fields: Any) -> Record:
        return Record.of({**self.shared, **fields, "metric": metric, "value": float(value)})


def drop_fields(spec: DropSpec, mask: Mask | None, dim: int | None) -> dict[str, Any]:
    """The drop columns of a record; `mask` is None for a projection (pca)."""
    return {"drop": spec.name, "drop_family": spec.family, "drop_kind": spec.variant,
            "drop_ratio": None if spec.ratio is None else float(spec.ratio), "seed": spec.seed,
            "dropped_indices": None if mask is None else list(mask.dropped),
            "n_dropped": spec.n_drop(dim) if mask is None and dim else (mask.n_dropped if mask else None), "dim": dim}


# Old stores wrote per-track keys; a reader maps them to the common names.
LEGACY_KEYS = {"git": "git_hash", "created": "time", "family": "drop_family", "kind": "drop_kind",
               "dropped": "dropped_indices", "hidden_size": "dim", "pretrained": "model_id", "k": "drop_ratio"}
# What decided a number apart from the drop, per old schema: the baseline join of old records.
_LEGACY_SETTINGS = ("track", "model", "model_id", "gguf_file", "revision", "dtype", "quantization", "backend", "task",
                    "num_fewshot", "limit", "apply_chat_template", "gen_kwargs", "data", "limits", "analysis")


def _migrate(row: dict[str, Any]) -> dict[str, Any]:
    if "settings_id" in row:
        return row
    for old, new in LEGACY_KEYS.items():
        if old in row and new not in row:
            row[new] = row.pop(old)
    row["settings_id"] = settings_id({k: row.get(k) for k in _LEGACY_SETTINGS})
    return row
