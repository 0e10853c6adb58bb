"""The real vLLM engine, driven from the main test environment.

The CPU engine lives in its own environment (.venv-vllm, scripts/install_vllm_cpu.sh); the tests start
`llmtrunc` from the main environment, which re-runs --backend vllm commands there, exactly as a user's
command does. Without that environment the tests skip, except under CI, where a skipped engine test
would hide that the engine never ran: there they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtrunc.llm.vllm_backend import vllm_env
from llmtrunc.store import ResultsStore


def require_vllm_env() -> Path:
    """The vLLM environment's python, once it imports vllm and llmtrunc."""
    python = vllm_env() / "bin" / "python"
    works = python.is_file() and subprocess.run([str(python), "-c", "import vllm, llmtrunc"],
                                                capture_output=True).returncode == 0
    if not works:
        message = f"no working vLLM environment at {vllm_env()}: bash scripts/install_vllm_cpu.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def llmtrunc_cli(*argv: str, cwd: Path, check: bool = True, here: bool = False) -> subprocess.CompletedProcess:
    """`llmtrunc ARGV` in the vLLM environment, one engine at a time (each takes about 5 GiB); `here`: started
    from the main environment, which re-runs it there (what a user's command does, 10-15 s slower)."""
    python = sys.executable if here else str(vllm_env() / "bin" / "python")
    proc = subprocess.run([python, "-m", "llmtrunc.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=1800)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def cell_samples(results: Path, task: str) -> dict[tuple, list[dict]]:
    """(backend, export method, drop) -> the cell's lm-eval samples of `task`, in document order."""
    store = ResultsStore(results)
    found = {}
    for record in store.all_records():
        if record.task != task or record.metric not in ("acc", "exact_match"):
            continue
        key = (record.extra["backend"], record.extra.get("export_method"), record.drop)
        rows = [json.loads(line) for line in
                (store.run_dir(record.run_id) / f"samples_{record.extra['lm_eval_task']}.jsonl").read_text().splitlines()]
        found[key] = sorted(rows, key=lambda r: r["doc_id"])
    return found


def loglikelihoods(samples: list[dict]) -> list[float]:
    """Every request's loglikelihood of a multiple-choice task, in document and choice order."""
    return [float(resp[0][0]) for row in samples for resp in row["resps"]]


def generations(samples: list[dict]) -> list[str]:
    return [row["resps"][0][0] for row in samples]
