"""Cell-level helpers of llmtrunc.evaluate."""

from torch.utils import collect_env

from llmtrunc.llm.evaluate import probe_environment_once


def test_environment_probe_runs_once_per_process():
    probe_environment_once()
    probe_environment_once()  # idempotent: never wraps twice
    first = collect_env.get_pretty_env_info()
    assert collect_env.get_pretty_env_info() is first and "PyTorch version" in first
