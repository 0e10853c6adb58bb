"""A record's command can be pasted into a fresh clone: no machine path (llmtrunc/provenance.py)."""

import os
import subprocess

import pytest

from llmtrunc import provenance


@pytest.fixture
def argv(monkeypatch):
    def command(*words: str) -> str:
        monkeypatch.setattr("sys.argv", ["/some/venv/bin/llmtrunc", *words])
        return provenance.command()
    return command


def test_absolute_paths_become_relative_to_the_working_directory(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith(provenance.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    assert argv("eval", "--results-dir", str(tmp_path / "results" / "llm"), "--drop", f"indices:{tmp_path}/dims.txt",
                f"--out={tmp_path.parent}/reports", "--tasks", f"arc_easy,{tmp_path}/my task.yaml") == (
        "llmtrunc eval --results-dir results/llm --drop indices:dims.txt --out=../reports "
        "--tasks 'arc_easy,my task.yaml'")


def test_a_folder_set_by_an_environment_variable_is_named_by_it(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRUNC_DATA_DIR", str(tmp_path / "shared data"))
    text = argv("eval", "--data-dir", str(tmp_path / "shared data"), "--calibration",
                str(tmp_path / "shared data" / "wiki text.raw"))
    assert text == ('llmtrunc eval --data-dir "${LLMTRUNC_DATA_DIR}" '
                    '--calibration "${LLMTRUNC_DATA_DIR}"\'/wiki text.raw\'')
    echoed = subprocess.run(["sh", "-c", "printf '%s|' " + text.split(" ", 2)[2]], capture_output=True, text=True,
                            env={"LLMTRUNC_DATA_DIR": "/x y"}, check=True).stdout
    assert echoed == "--data-dir|/x y|--calibration|/x y/wiki text.raw|"  # the shell expands it back, word for word
