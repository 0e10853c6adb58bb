"""The leaf helpers: hashes, atomic writes, slugs (llmtrunc/files.py)."""

import hashlib
import subprocess
import sys

import pytest

from llmtrunc.files import atomic_write, chunks_hash, code_digest, digest, file_digest, folder_digest, slug, staged_folder, texts_hash


def test_digest_is_stable_and_ignores_key_order():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert len(digest({"a": 1})) == 16 and len(digest({"a": 1}, 24)) == 24


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 10_000  # several read blocks
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(tmp_path / "absent") == "missing"


def test_code_digest_reads_the_code_not_the_words(tmp_path):
    """Docstrings and comments are left out, any change of code counts (a task module's hash is in every cell key),
    and what is hashed is the code as written, the same text on every Python version."""
    path = tmp_path / "m.py"
    path.write_text('"""Module."""\nimport os\n\n\nclass A:\n    """A é."""; n = 1\n\n    def f(self):\n'
                    '        """F."""\n        return "é"  # a comment\n', encoding="utf-8")
    before = code_digest(path)
    assert before == chunks_hash(['import os\nclass A:\n    ; n = 1\n    def f(self):\n        return "é"'.encode()])
    path.write_text('"""Other\nwords."""\nimport os\n\n\nclass A:\n    """B."""; n = 1\n\n    def f(self):  # why\n'
                    '        """G."""\n        return "é"\n', encoding="utf-8")
    assert code_digest(path) == before
    path.write_text(path.read_text(encoding="utf-8").replace('return "é"', 'return "y"'), encoding="utf-8")
    assert code_digest(path) != before
    path.write_text('"""Module."""\n"""a second string is code, not a docstring"""\n')
    assert code_digest(path) != code_digest(path.with_name("absent.py")) == "missing"
    path.with_name("e.py").write_text('"""Only a docstring."""\n')
    assert code_digest(path.with_name("e.py")) != code_digest(path)


def test_texts_hash_tells_apart_lists_with_the_same_concatenation():
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])


def test_atomic_write_creates_files_as_open_would_under_the_umask(tmp_path):
    code = ("import os, sys; os.umask(0o027); from pathlib import Path; from llmtrunc.files import atomic_write; "
            "atomic_write(Path(sys.argv[1]) / 'sub' / 'f.txt', 'text'); print(oct(os.umask(0o027)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0o27"  # nothing changed the process's umask
    written = tmp_path / "sub" / "f.txt"
    assert written.read_text() == "text" and written.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in written.parent.iterdir()] == ["f.txt"]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, "old")
    with pytest.raises(TypeError):
        atomic_write(path, 42)  # neither str nor bytes
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_importing_the_package_changes_no_process_state():
    """Nothing patched or registered at import (llmtrunc.llm.compat.install does it, at start-up)."""
    code = ("import os; os.umask(0o077); import llmtrunc.cli, llmtrunc.store, llmtrunc.llm.hf_trunc; "
            "import llmtrunc.llm.shared_body, llmtrunc.llm.shared_prefix, llmtrunc.llm.vllm_backend; "
            "import lm_eval.utils, gguf; from torch.utils import collect_env; "
            "from lm_eval.api.registry import model_registry; from transformers import AttentionInterface; "
            "print(oct(os.umask(0)), hasattr(lm_eval.utils.env.from_string, 'cache_info'), "
            "hasattr(collect_env.get_pretty_env_info, 'cache_info'), gguf.GGUFReader.__module__, "
            "'hf-trunc' in model_registry, llmtrunc.llm.shared_prefix.NAME in AttentionInterface._global_mapping)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0o77", "False", "False", "gguf.gguf_reader", "False", "False"]


def test_slug():
    assert slug("meta-llama/Llama 3.1") == "meta-llama-Llama-3.1"
    assert slug("  ") == "x"
    assert slug("abcdef", 3) == "abc" and slug("abcdef", 3, keep_end=True) == "def"
    assert slug("a b/c", sep="_") == "a_b_c"


def test_chunks_and_folders_hash_their_bytes_in_order(tmp_path):
    assert chunks_hash([b"ab", b"", b"c"]) == hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".hidden").write_text("left out")
    assert folder_digest(tmp_path) == hashlib.sha256(b"a.json{}" + b"b/w.bin\x00\x01").hexdigest()
    (tmp_path / "a.json").rename(tmp_path / "c.json")
    assert folder_digest(tmp_path) != hashlib.sha256(b"a.json{}" + b"b/w.bin\x00\x01").hexdigest()


def test_a_staged_folder_is_published_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with staged_folder(target, complete=lambda folder: False) as staging:
        (staging / "part").write_text("1")
        assert not target.exists()
    assert (target / "part").read_text() == "1"
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "failed", complete=lambda folder: False) as staging:
        (staging / "part").write_text("1")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folder, no staging left


def test_a_folder_that_appeared_meanwhile_is_kept_replaced_or_refused(tmp_path):
    target = tmp_path / "out"

    def publish(text: str, complete: bool, replace: bool = False) -> None:
        with staged_folder(target, complete=lambda folder: complete, replace=replace) as staging:
            (staging / "part").write_text(text)

    publish("first", complete=False)
    publish("second", complete=True)  # another process finished first: its folder stays
    assert (target / "part").read_text() == "first"
    publish("third", complete=False, replace=True)
    assert (target / "part").read_text() == "third"
    with pytest.raises(FileExistsError):
        publish("fourth", complete=False)
    assert (target / "part").read_text() == "third" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
