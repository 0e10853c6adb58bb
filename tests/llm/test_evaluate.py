"""Cell-level helpers of llmtrunc.evaluate."""

from torch.utils import collect_env

from lm_eval.utils import apply_template, env

from llmtrunc.llm.evaluate import memoize_lm_eval_once


def test_environment_probe_and_templates_are_computed_once_per_process():
    memoize_lm_eval_once()
    memoize_lm_eval_once()  # idempotent: never wraps twice
    first = collect_env.get_pretty_env_info()
    assert collect_env.get_pretty_env_info() is first and "PyTorch version" in first
    template = "Question: {{question}}\nAnswer: {{answer | regex_replace('x', 'y')}}"
    assert env.from_string(template) is env.from_string(template)  # compiled once
    assert apply_template(template, {"question": "q1", "answer": "x"}) == "Question: q1\nAnswer: y"
    assert apply_template(template, {"question": "q2", "answer": "zx"}) == "Question: q2\nAnswer: zy"
