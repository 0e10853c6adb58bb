"""Content hashes, atomic writes and folders, file-name slugs: the leaf helpers every layer uses (the only user of hashlib).

Standard library only, and imports nothing of llmtrunc, so any module may use it without a cycle.

    digest(data)        a stable short hash of JSON-able data (cell keys, run ids, cache keys)
    chunks_hash(chunks) SHA-256 of byte chunks in order (their concatenation, never held at once)
    file_digest(path)   SHA-256 of a file's bytes, read in blocks
    code_digest(path)   SHA-256 of a Python file's code as written, its docstrings and comments cut
    folder_digest(path) SHA-256 of a folder's files: their relative paths and bytes (local models)
    stored_file_digest(path, memo)  the same, remembered in `memo` by path, size and mtime (large weights)
    texts_hash(texts)   SHA-256 of an ordered list of texts (length-prefixed, so no two lists collide)
    atomic_write(p, x)  write to a temporary name beside `p`, then rename: readers see the old or the whole new file
    staged_folder(p)    fill a temporary folder beside `p`, then rename it to `p`: readers never see a partial folder
    slug(text)          a file-name-safe form of a label
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import tokenize
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

_BLOCK = 1 << 20


def digest(data: Any, length: int = 16) -> str:
    """A stable short hash of JSON-able data (keys sorted)."""
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def chunks_hash(chunks: Iterable[bytes]) -> str:
    """SHA-256 of `chunks` in order: the hash of their concatenation, read one chunk at a time."""
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk)
    return sha.hexdigest()


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(_BLOCK), b"")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes ('missing' when absent: a missing file is a different cell, not a crash)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    return chunks_hash(_blocks(path))


def code_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a Python file's code ('missing' when absent): its text with docstrings, comments, blank lines and
    trailing spaces cut, so correcting a module's words keeps every key that hashes it. The text as written, not
    `ast.unparse`'s rendering of it, which differs between Python versions (3.10 writes `for (a, b) in`)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    source = path.read_text(encoding="utf-8")
    lines = source.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def at(row: int, column: int, utf8: bool = False) -> int:
        """The offset in `source` of a 1-based row and 0-based column (tokenize's in characters, ast's in bytes)."""
        return starts[row - 1] + (len(lines[row - 1].encode()[:column].decode()) if utf8 else column)

    cuts = [(at(*token.start), at(*token.end)) for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            doc = body[0]
            cuts.append((at(doc.lineno, doc.col_offset, utf8=True), at(doc.end_lineno, doc.end_col_offset, utf8=True)))
    for begin, end in sorted(cuts, reverse=True):
        source = source[:begin] + source[end:]
    code = "\n".join(line.rstrip() for line in source.split("\n") if line.strip())
    return chunks_hash([code.encode()])


def folder_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of the files under `folder` (hidden ones left out), each its path relative to `folder` then its
    bytes, in sorted order: a changed, added or renamed file changes it."""
    folder = Path(folder)

    def chunks() -> Iterator[bytes]:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            yield str(path.relative_to(folder)).encode()
            yield from _blocks(path)

    return chunks_hash(chunks())


def stored_file_digest(path: str | os.PathLike, memo: Path) -> str:
    """`file_digest` of a file that is large and rarely changes (model weights), remembered as one small file in
    the folder `memo` under its resolved path, size and modification time: any write changes size or mtime, so
    a remembered hash is never stale, and a file moved elsewhere is hashed once more at its new place."""
    path = Path(path).resolve()
    if not path.is_file():
        return "missing"
    stat = path.stat()
    remembered = Path(memo) / f"{digest([str(path), stat.st_size, stat.st_mtime_ns], 32)}.sha256"
    if remembered.is_file():
        return remembered.read_text().strip()
    value = file_digest(path)
    atomic_write(remembered, value)
    return value


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 of texts in order, each prefixed by its UTF-8 length."""

    def chunks() -> Iterator[bytes]:
        for text in texts:
            encoded = text.encode("utf-8")
            yield len(encoded).to_bytes(8, "little")
            yield encoded

    return chunks_hash(chunks())


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary name and rename: readers see the old file or the whole new one.

    The temporary file is created with mode 0o666 less the process umask, as an ordinary open() creates
    a file (tempfile.mkstemp would give 0600), so the umask is never read or changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(target: Path, complete: Callable[[Path], bool], replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside `target` to fill, renamed to `target` when the block ends (atomic: readers never
    see a partial folder) and removed when it raises. When `target` was filled meanwhile: kept when `complete(target)`
    (another process published first; ours is removed), replaced when `replace`, FileExistsError otherwise."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        try:
            staging.rename(target)  # atomic; fails when `target` exists and is not empty
        except OSError:
            if complete(target):
                shutil.rmtree(staging, ignore_errors=True)
                return
            if not replace:
                raise FileExistsError(f"{target} appeared while it was being written") from None
            shutil.rmtree(target)
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def slug(text: str, limit: int | None = None, keep_end: bool = False, sep: str = "-") -> str:
    """`text` with each run of characters outside [A-Za-z0-9._-] replaced by `sep` and trimmed of it at both
    ends, cut to `limit` characters (its last ones with `keep_end`); "x" when nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", sep, text).strip(sep)
    if limit is not None:
        cleaned = cleaned[-limit:] if keep_end else cleaned[:limit]
    return cleaned or "x"
