"""The parity guard's comparison (llmtrunc.llm.parity): within the dtype's tolerance it gives the figure the
records carry; beyond it, another prompt or another greedy continuation, one line naming the first request.
The guard end to end, on the real engine: tests/llm/test_vllm_engine.py."""

import math

import pytest

from llmtrunc.cli import main
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import parity
from llmtrunc.llm.parity import Response


def requests(values, task="arc_easy"):
    return [Response(task, doc, index, ("Question: ...\nAnswer:", f" choice {index}"), value)
            for doc, row in enumerate(values) for index, value in enumerate(row)]


HOOK = requests([[-3.25, -7.5], [-1.0, -12.0]])


def test_within_the_tolerance_the_figure_names_the_largest_difference():
    engine = requests([[-3.2502, -7.5], [-1.0, -12.0001]])
    figure = parity.compare(engine, HOOK, "float32")
    assert figure["documents"] == 2 and figure["requests"] == 4 and figure["generations_equal"] == 0
    assert math.isclose(figure["max_abs_loglikelihood_diff"], 2e-4, rel_tol=1e-3)
    assert figure["tolerance"] == {"absolute": 1e-3, "relative": 1e-5, "dtype": "float32"}


@pytest.mark.parametrize("dtype,accepted", [("float32", False), ("bfloat16", True)])
def test_the_tolerance_follows_the_engine_dtype(dtype, accepted):
    engine = requests([[-3.25, -7.5], [-1.05, -12.0]])
    if accepted:
        assert parity.compare(engine, HOOK, dtype)["max_abs_loglikelihood_diff"] == pytest.approx(0.05)
        return
    with pytest.raises(LLMTruncError) as refused:
        parity.compare(engine, HOOK, dtype)
    message = str(refused.value)
    assert message.startswith("the engine and the hook path differ at request 3 of 4, arc_easy document 1 request 0 "
                              "(' choice 0'): loglikelihood -1.0500 against -1.0000")
    assert "--no-parity-check" in message and "\n" not in message


def test_nan_another_prompt_and_another_generation_are_refused():
    with pytest.raises(LLMTruncError, match="request 1 of 4"):
        parity.compare(requests([[math.nan, -7.5], [-1.0, -12.0]]), HOOK, "float32")
    moved = [*HOOK[:1], Response("arc_easy", 0, 1, ("<bos>Question: ...\nAnswer:", " choice 1"), -7.5), *HOOK[2:]]
    with pytest.raises(LLMTruncError, match="were given different prompts at request 2 of 4"):
        parity.compare(moved, HOOK, "float32")
    generated = [Response("gsm8k", 0, 0, ("Question: 2 + 2?",), " 4")]
    assert parity.compare(generated, generated, "float32")["generations_equal"] == 1
    with pytest.raises(LLMTruncError, match="different greedy continuations at request 1 of 1"):
        parity.compare([Response("gsm8k", 0, 0, ("Question: 2 + 2?",), " 5")], generated, "float32")


def test_a_shorter_run_compares_fewer_documents():
    assert parity.limit(None) == parity.limit(0.5) == parity.limit(40) == parity.DOCUMENTS == 4
    assert parity.limit(2) == 2


def test_no_parity_check_applies_to_the_vllm_backend_only(capsys, tmp_path):
    code = main(["eval", "--no-parity-check", "--tasks", "arc_easy", "--results-dir", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("llmtrunc: error: --no-parity-check") and err.count("\n") == 1
