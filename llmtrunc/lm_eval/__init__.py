"""`python -m llmtrunc.lm_eval ...`: lm-eval's own CLI with the `hf-trunc` model registered.

lm-eval's CLI only knows models inside its package; llmtrunc.llm.compat.install registers `hf-trunc`
(a lazy target) at start-up. Every argument goes to lm-eval unchanged, except that llmtrunc's local task folder is
added as `--include_path` when none is given, and lm-eval's `vllm` model also loads vLLM's CPU build
(llmtrunc.llm.compat.import_lm_eval_vllm). Multi-GPU data parallel:
`accelerate launch -m llmtrunc.lm_eval --model hf-trunc ...`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from lm_eval.__main__ import cli_evaluate

    from llmtrunc.llm.compat import install
    from llmtrunc.llm.tasks import tasks_dir

    install()  # hf-trunc in lm-eval's model registry, and its per-process memoisations for every model
    args = list(sys.argv[1:] if argv is None else argv)
    if "vllm" in args or "--model=vllm" in args:
        from llmtrunc.llm.compat import import_lm_eval_vllm
        from llmtrunc.llm.vllm_backend import require_vllm

        require_vllm()
        import_lm_eval_vllm()
    given = any(a == "--include_path" or a.startswith("--include_path=") for a in args)
    if args and not given and not {"-h", "--help"} & set(args):
        args += ["--include_path", str(tasks_dir())]
    sys.argv = [sys.argv[0], *args]
    cli_evaluate()
