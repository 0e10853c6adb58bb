"""Re-running stored encoder cells, as `llmtrunc verify` does (llmtrunc.verify).

An encoder cell's records name its model (alias and revision: a local copy's content hash), its task, the
task's limits and the drop; `replay` rebuilds the cells, encodes each task once with the embedding cache off (a
cached embedding would verify nothing) and scores every drop from the same embeddings, as `encoder eval` does.
The records keep no per-item values, so a cell is always re-run whole. Where the installed model or the task's
data are not the ones the records name, it says so beside the result.
"""

from __future__ import annotations

from collections.abc import Iterator

from llmtrunc.encoder.cache import EmbeddingCache
from llmtrunc.encoder.evaluate import EncoderCompute, encoder_cells
from llmtrunc.encoder.models import Encoder, resolve_model
from llmtrunc.encoder.tasks import Limits, resolve_task
from llmtrunc.record import Record
from llmtrunc.spec import parse_drop

Replayed = tuple[list[Record], list[Record], list[str]]  # the stored records, the re-run's, notes


def replay(cells: list[list[Record]], device: str | None = None, data_dir: str | None = None) -> Iterator[Replayed]:
    """Each stored cell re-run whole (its stored records, the re-run's, notes); one encoding per model and task."""
    groups: dict[tuple, list[list[Record]]] = {}
    for stored in cells:
        first = stored[0]
        groups.setdefault((first.model, first.task, repr(first.extra.get("limits"))), []).append(stored)
    encoders: dict[str, Encoder] = {}
    for (model, task_name, _), members in groups.items():
        head = members[0][0]
        encoder = encoders.setdefault(model, Encoder(resolve_model(model), device=device))
        limits = Limits(**(head.extra.get("limits") or {}))
        task = resolve_task(task_name, data_dir, limits)
        notes = []
        if head.revision and encoder.resolved_revision() != head.revision:
            notes.append(f"another model revision installed: {encoder.revision}, the records name {head.revision}")
        if head.extra.get("data") and task.fingerprint() != head.extra["data"]:
            notes.append(f"the task's data changed since: fingerprint {task.fingerprint()}, the records name "
                         f"{head.extra['data']}")
        by_id = {}
        for stored in members:
            cell = encoder_cells(encoder, [task], [parse_drop(stored[0].drop)])[0]
            by_id[cell.run_id] = (stored, cell)
        compute = EncoderCompute(encoder, EmbeddingCache(enabled=False), limits, log=lambda _: None)
        for cell, records, _ in compute([cell for _, cell in by_id.values()]):
            yield by_id[cell.run_id][0], records, notes
