"""The wheel ships the package, tasks/ and hooks/, and an installed copy finds them without the checkout."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "llmtrunc").rglob("__init__.py")}
    assert found | {"llmtrunc.tasks", "llmtrunc.tasks.mmlu", "llmtrunc.hooks"} == listed


def test_installed_wheel_finds_its_tasks_and_hooks(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ("llmtrunc", "tasks", "hooks"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w",
                    str(tmp_path / "wheel")], check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "wheel").glob("llmtrunc-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "llmtrunc" / "tasks" / "local_arc_easy.yaml").is_file()
    assert (site / "llmtrunc" / "tasks" / "mmlu" / "_default_template_yaml").is_file()
    assert len(list((site / "llmtrunc" / "hooks").glob("*.yaml"))) == len(list((ROOT / "hooks").glob("*.yaml")))
    code = ("from llmtrunc.llm.tasks import tasks_dir, list_local_tasks; from llmtrunc.llm.architectures import registry; "
            "print(tasks_dir()); print(len(list_local_tasks())); print(len(list(registry())))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("LLMTRUNC_TASKS_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    where, n_tasks, n_archs = out.stdout.split()
    assert Path(where) == site / "llmtrunc" / "tasks"  # the wheel's copy, not the checkout's
    assert int(n_tasks) > 60 and int(n_archs) == 12
