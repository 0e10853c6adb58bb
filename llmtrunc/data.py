"""Where the offline benchmark data lives: --data-dir, else $LLMTRUNC_DATA_DIR, else ../shared/data
(beside the working directory, or beside the llmtrunc checkout for an editable install)."""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

from llmtrunc.errors import LLMTruncError

ENV_VAR = "LLMTRUNC_DATA_DIR"
CACHE_ENV_VAR = "LLMTRUNC_CACHE_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIRS = (Path("..") / "shared" / "data", PROJECT_ROOT.parent / "shared" / "data")


def shipped_dir(name: str) -> Path:
    """`tasks` or `hooks`: the repository's folder in a checkout, else the copy inside the installed wheel."""
    checkout = PROJECT_ROOT / name
    if (PROJECT_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files("llmtrunc") / name))


def cache_dir(name: str) -> Path:
    """One cache's folder (embeddings, profiles): under $LLMTRUNC_CACHE_DIR, else the checkout's .cache."""
    root = Path(os.environ[CACHE_ENV_VAR]).expanduser() if os.environ.get(CACHE_ENV_VAR) else PROJECT_ROOT / ".cache"
    return root / name


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data directory in force, or None when none is configured and no default exists."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    return next((d.resolve() for d in DEFAULT_DATA_DIRS if d.is_dir()), None)


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory, which must exist."""
    found = find_data_dir(explicit)
    if found is None:
        raise LLMTruncError(f"no data directory: pass --data-dir or set {ENV_VAR} (no ../shared/data here)")
    if not found.is_dir():
        raise LLMTruncError(f"data directory not found: {found}")
    return found


def data_file(relative: str, explicit: str | os.PathLike | None = None) -> Path:
    """One file of the data directory, with a clear error when it is missing."""
    path = data_dir(explicit) / relative
    if not path.exists():
        raise LLMTruncError(f"missing data file {path} (layout as in the data directory's README.md)")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON Lines file; a malformed line is a one-line error naming file and line."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LLMTruncError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows
