"""Every command in README.md and docs/ parses: a reader who copies one gets a run, not a usage error.

Commands come from the ```bash blocks (continuation lines joined, `&&` chains split, leading `VAR=value`
assignments skipped). `llmtrunc ...` (also `-m llmtrunc.cli ...` under a launcher: torchrun, `accelerate launch`)
goes through the CLI's own parser, `python -m llmtrunc.lm_eval ...` (also under a launcher) through lm-eval's, `python scripts/X.py ...` through the script's own
argparse (stopped right after parsing), and `bash scripts/X.sh` must name a script that exists. Nothing runs.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from llmtrunc.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(page: Path) -> list[list[str]]:
    """The commands of a page's bash blocks, as argument lists."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]
                if words:
                    found.append(words)
    return found


ALL = [(page.relative_to(ROOT).as_posix(), words) for page in PAGES for words in commands(page)]


class Parsed(Exception):
    """Raised by argparse right after a script's arguments parse (so the script does not run)."""


def lm_eval_args(words: list[str]) -> list[str] | None:
    if "llmtrunc.lm_eval" in words and words[words.index("llmtrunc.lm_eval") - 1] == "-m":
        return words[words.index("llmtrunc.lm_eval") + 1:]
    return None


def cli_args(words: list[str]) -> list[str] | None:
    """The llmtrunc arguments of `llmtrunc ...` or of a launcher's `-m llmtrunc.cli ...`."""
    if words[0] == "llmtrunc":
        return words[1:]
    if "llmtrunc.cli" in words and words[words.index("llmtrunc.cli") - 1] == "-m":
        return words[words.index("llmtrunc.cli") + 1:]
    return None


def check(words: list[str], monkeypatch) -> str:
    """Parse one command; returns what kind it was."""
    if cli_args(words) is not None:
        build_parser().parse_args(cli_args(words))
        return "llmtrunc"
    if lm_eval_args(words) is not None:
        from lm_eval._cli import HarnessCLI

        monkeypatch.setattr(sys, "argv", ["lm_eval", *lm_eval_args(words)])
        HarnessCLI().parse_args()
        return "lm-eval"
    if words[0] in ("python", "python3") and len(words) > 1 and words[1].startswith("scripts/"):
        parse_args = argparse.ArgumentParser.parse_args

        def parse_then_stop(self, args=None, namespace=None):
            parse_args(self, args, namespace)  # exits on an unknown or malformed argument
            raise Parsed

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        monkeypatch.setattr(sys, "argv", words[1:])
        with pytest.raises(Parsed):
            runpy.run_path(str(ROOT / words[1]), run_name="__main__")
        return "script"
    if words[0] in ("bash", "sbatch") and any(w.startswith("scripts/") for w in words):
        assert (ROOT / next(w for w in words if w.startswith("scripts/"))).is_file()
        return "shell script"
    return "other"


@pytest.mark.parametrize("page,words", ALL, ids=[f"{page}:{' '.join(words)[:60]}" for page, words in ALL])
def test_every_documented_command_parses(page, words, monkeypatch):
    try:
        check(words, monkeypatch)
    except SystemExit as exit_:
        pytest.fail(f"{page}: `{' '.join(words)}` does not parse (exit {exit_.code})")


def test_the_pages_hold_commands_of_every_kind():
    kinds = {}
    for _, words in ALL:
        kind = "llmtrunc" if cli_args(words) is not None else "lm-eval" if lm_eval_args(words) is not None else words[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["llmtrunc"] >= 30 and kinds["lm-eval"] >= 2 and kinds["python"] >= 3
    for page in PAGES:
        assert commands(page), f"{page.name} has no runnable command"
