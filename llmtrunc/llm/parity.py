"""The parity guard of an engine run: the engine must score what the hook path scores, checked before it scores.

An engine scores a checkpoint the hook path never saw run: an export, tokenized from the export's own
tokenizer. The export's checks (logits on token ids, the tokenizer's encodings of sample prompts) and the
engine check (llmtrunc.llm.vllm_backend) each cover one way that can go wrong; this one covers the rest
end to end. Before an engine scores a cell, the first `DOCUMENTS` documents of the cell's task go through
lm-eval on the engine and on the hook path (hf-trunc on the source model with the same drop, computed
before any engine starts); every request's loglikelihood must agree within the engine dtype's tolerance
and every greedy continuation exactly, or the run stops in one line naming the first request that
differs. The figure goes into the cell's records (`parity`). An engine fed text without Gemma 3's BOS
(issue 31) moves loglikelihoods by nats; the engines' own float32 noise is about 1e-4 nats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmtrunc.errors import LLMTruncError

DOCUMENTS = 4  # documents of the cell's task compared (a multiple-choice document is one request per choice)
# |engine - hook| allowed per request: absolute (nats) + relative to |hook|, by the engine's dtype. float32: the
# CPU engine measured within 1.3e-4 nats of the hook path; half precision reorders roundings over the whole model.
TOLERANCE = {"float32": (1e-3, 1e-5), "float16": (5e-2, 1e-3), "bfloat16": (2e-1, 5e-3)}
OPT_OUT = "--no-parity-check"


@dataclass(frozen=True)
class Response:
    """One request of an lm-eval run and what the LM answered (a loglikelihood, or a generated text)."""

    task: str
    doc_id: int
    index: int
    arguments: tuple
    value: Any

    def describe(self) -> str:
        tail = self.arguments[-1] if self.arguments and isinstance(self.arguments[-1], str) else ""
        return f"{self.task} document {self.doc_id} request {self.index}" + (f" ({tail[:40]!r})" if tail else "")


def limit(run_limit: float | None) -> int:
    """The documents to compare: DOCUMENTS, or fewer when the run itself scores fewer."""
    return int(run_limit) if isinstance(run_limit, int) and run_limit < DOCUMENTS else DOCUMENTS


def responses(results: dict) -> list[Response]:
    """Every request of lm-eval's samples (results of simple_evaluate with log_samples), in task and document order."""
    found = []
    for task in sorted(results.get("samples") or {}):
        seen = set()
        for row in sorted(results["samples"][task], key=lambda r: r["doc_id"]):
            if row["doc_id"] in seen:  # one row per filter, holding the same requests
                continue
            seen.add(row["doc_id"])
            for index, (arguments, resps) in enumerate(zip(row["arguments"], row["resps"])):
                value = resps[0]
                value = value if isinstance(value, str) else float(value[0] if isinstance(value, (tuple, list)) else value)
                found.append(Response(task, row["doc_id"], index, tuple(map(_plain, arguments)), value))
    return found


def _plain(argument):
    return argument if isinstance(argument, (str, int, float)) else repr(argument)


def _tolerances(dtype: str) -> tuple[float, float]:
    return TOLERANCE.get(str(dtype).removeprefix("torch."), TOLERANCE["bfloat16"])  # unknown: the loosest


def tolerance(dtype: str, reference: float) -> float:
    """How far the engine's loglikelihood of a request may lie from the hook path's `reference`."""
    atol, rtol = _tolerances(dtype)
    return atol + rtol * abs(reference)


def compare(engine: list[Response], hook: list[Response], dtype: str) -> dict[str, Any]:
    """The parity figure of `engine`'s responses against the hook path's; the first request beyond the dtype's
    tolerance (or with another prompt, or another greedy continuation) stops the run in one line."""
    if not hook:
        raise LLMTruncError("the parity check found no requests in the task's first documents")
    worst, generations = 0.0, 0
    for number, (got, want) in enumerate(zip(engine, hook, strict=False), 1):
        where = f"request {number} of {len(hook)}, {want.describe()}"
        if (got.task, got.doc_id, got.index, got.arguments) != (want.task, want.doc_id, want.index, want.arguments):
            raise LLMTruncError(f"the engine and the hook path were given different prompts at {where}; rerun with "
                                f"{OPT_OUT} to score anyway")
        if isinstance(want.value, str):
            generations += 1
            if got.value != want.value:
                raise LLMTruncError(f"the engine and the hook path generate different greedy continuations at {where}: "
                                    f"{got.value[:40]!r} against {want.value[:40]!r}; the engine runs another model or "
                                    f"input (rerun with {OPT_OUT} to score anyway)")
            continue
        diff = abs(got.value - want.value)
        if not diff <= tolerance(dtype, want.value):  # also refuses NaN
            raise LLMTruncError(f"the engine and the hook path differ at {where}: loglikelihood {got.value:.4f} against "
                                f"{want.value:.4f} (|difference| {diff:.3g} > {tolerance(dtype, want.value):.2g}, "
                                f"{dtype}); the engine runs another model or input, e.g. an export whose tokenizer "
                                f"does not encode as the source's (rerun with {OPT_OUT} to score anyway)")
        worst = max(worst, diff)
    if len(engine) != len(hook):
        raise LLMTruncError(f"the engine answered {len(engine)} requests of the task's first documents, the hook path "
                            f"{len(hook)}; rerun with {OPT_OUT} to score anyway")
    atol, rtol = _tolerances(dtype)
    return {"documents": len({(r.task, r.doc_id) for r in hook}), "requests": len(hook),
            "max_abs_loglikelihood_diff": worst, "tolerance": {"absolute": atol, "relative": rtol, "dtype": dtype},
            "generations_equal": generations}
