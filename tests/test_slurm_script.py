"""scripts/slurm_sweep.sh with stand-in sbatch/srun/llmtrunc: shard numbering and the dependent report job."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_sweep.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def fake_bin(folder: Path, log: Path) -> Path:
    folder.mkdir()
    bodies = {
        "srun": 'echo "srun $*" >> "$LOG"; "$@"',
        "llmtrunc": 'echo "llmtrunc $*" >> "$LOG"',
        "sbatch": 'echo "sbatch $*" >> "$LOG"; case "$*" in *dependency*) echo 102;; *) echo 101;; esac',
    }
    for name, body in bodies.items():
        path = folder / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def run(tmp_path, **env):
    log = tmp_path / "calls.log"
    bin_dir = fake_bin(tmp_path / "bin", log)
    full = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "VENV": str(tmp_path / "none"),
            "RESULTS": str(tmp_path / "results"), "CONFIG": "grid.yaml", **env}
    for key in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SHARDS", "DRY_RUN"):
        if key not in env:
            full.pop(key, None)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, log.read_text().splitlines()


def test_array_task_runs_its_one_based_shard(tmp_path):
    _, calls = run(tmp_path, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_COUNT="8")
    assert calls[-1] == f"llmtrunc sweep --config grid.yaml --shard 3/8 --results-dir {tmp_path / 'results'}"


def test_resubmitted_single_index_keeps_the_shard_count(tmp_path):
    _, calls = run(tmp_path, SLURM_ARRAY_TASK_ID="5", SLURM_ARRAY_TASK_COUNT="1", SHARDS="8")
    assert "--shard 6/8" in calls[-1]


def test_submit_mode_submits_array_then_dependent_report(tmp_path):
    out, calls = run(tmp_path, SHARDS="4")
    assert calls[0].startswith("sbatch --parsable --export=ALL --array=0-3 ")
    assert "--dependency=afterany:101" in calls[1] and "llmtrunc report" in calls[1]
    assert "submitted sweep array 101 (4 shards) and report job 102" in out


def test_dry_run_covers_every_shard(tmp_path):
    _, calls = run(tmp_path, SHARDS="3", DRY_RUN="1")
    assert [c.split("--shard ")[1].split()[0] for c in calls] == ["1/3", "2/3", "3/3"]
    assert all("--dry-run" in c for c in calls)
