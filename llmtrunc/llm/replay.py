"""Re-running stored LLM cells on their first N items, as `llmtrunc verify` does (llmtrunc.verify).

A cell's records name everything that decides its numbers: the model (alias, revision, dtype, quantisation,
backend), the task, few-shot, chat template, generation arguments, the drop, its position and, for a
profile-based drop, the calibration its profile came from. `replay` rebuilds the cell from them at the limit
asked for, computes it with the same compute path (shared body or separate) and batch size, and hands back the
records a run would write; nothing goes to a results store. Where the installed weights or the task's files are
not the ones the records name (their hashes), it says so beside the result.
"""

from __future__ import annotations

from collections.abc import Iterator

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.calibration import DEFAULT_FILE, Calibration
from llmtrunc.llm.evaluate import LLMCell, LLMCompute, RunSettings
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.run import LLMRun
from llmtrunc.llm.tasks import fingerprint
from llmtrunc.record import Record
from llmtrunc.runner import Cell
from llmtrunc.spec import parse_drop

Replayed = tuple[list[Record], list[Record], list[str]]  # the stored records, the re-run's, notes


def cell_of(stored: Record, limit: float | None, device: str, data_dir: str | None = None) -> tuple[Cell, list[str]]:
    """The runner cell of a stored record's settings at `limit`, and notes on what differs from what it names."""
    extra = stored.extra
    if extra.get("backend", "hf") != "hf":
        raise LLMTruncError(f"{stored.run_id} ran under {extra['backend']}: verify re-runs hf cells (for vLLM cells, "
                            "llmtrunc eval --backend vllm with the records' settings)")
    profile = extra.get("calibration") or {}
    calibration = Calibration.of(None if profile.get("source", DEFAULT_FILE) == DEFAULT_FILE else profile["source"],
                                 profile.get("tokens"))
    settings = RunSettings(
        model=resolve_model(stored.model), revision=stored.revision or "main", dtype=extra.get("dtype", "auto"),
        num_fewshot=stored.num_fewshot, limit=limit, apply_chat_template=extra.get("apply_chat_template", False),
        gen_kwargs=extra.get("gen_kwargs"), quantization=extra.get("quantization"),
        batch_size=str(extra.get("batch_size", "1")), device=device, calibration=calibration)
    run = LLMRun.build([settings], [stored.task], data_dir)
    task, spec = run.tasks[0], parse_drop(stored.drop)
    notes = []
    weights = settings.model.weights_sha256()
    if extra.get("model_sha256") and weights != extra["model_sha256"]:
        notes.append(f"other weights installed: sha256 {str(weights)[:12]}, the records name "
                     f"{extra['model_sha256'][:12]}")
    data = fingerprint(task)
    if extra.get("data") and data != extra["data"]:
        notes.append(f"the task's config or data changed since: fingerprint {data}, the records name {extra['data']}")
    if spec.needs_profile and profile.get("sha256") and calibration.key()["sha256"] != profile["sha256"]:
        notes.append("another calibration text than the records name")
    return run.drop_cells([spec], [stored.at if spec.kind != "none" else "post-norm"])[0], notes


def replay(cells: list[list[Record]], limit: float | None, device: str, data_dir: str | None = None,
           ) -> Iterator[Replayed]:
    """Each stored cell re-run at `limit` (its stored records, the re-run's, notes); cells of one model, task and
    compute path share one model load and one task build, as in a sweep."""
    from llmtrunc.llm.shared_body import SharedBodyLM

    groups: dict[tuple, list[tuple[list[Record], Cell, list[str]]]] = {}
    for stored in cells:
        cell, notes = cell_of(stored[0], limit, device, data_dir)
        job: LLMCell = cell.payload
        key = (repr(job.settings), job.task, stored[0].extra.get("compute"))  # RunSettings holds a dict: no hash
        groups.setdefault(key, []).append((stored, cell, notes))
    for (_, _, compute), members in groups.items():
        run = LLMCompute(SharedBodyLM if compute == "shared" else None)
        by_id = {cell.run_id: (stored, notes) for stored, cell, notes in members}
        for cell, records, _ in run([cell for _, cell, _ in members]):
            stored, notes = by_id[cell.run_id]
            yield stored, records, notes
