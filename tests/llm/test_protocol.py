"""TruncLM, the LM interface of the runner's LLM cells: hf-trunc and the vLLM backend implement all of it."""

import ast
import inspect

import pytest
from lm_eval.models.huggingface import HFLM

from llmtrunc.llm import vllm_backend
from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.llm.protocol import CountsRequests, TruncLM
from llmtrunc.llm.shared_body import SharedBodyLM

MEMBERS = ("shared", "compute", "record_extra", "hidden_size", "mask_for", "set_drop", "profile", "share", "clear_cache",
           "requests_scored")
COUNTED = {name for name in vars(CountsRequests) if not name.startswith("_")}  # what the counting base provides


def test_the_members_are_the_abstract_ones():
    declared = {name for name in vars(TruncLM) if not name.startswith("_")}
    assert declared == set(MEMBERS) == TruncLM.__abstractmethods__


def test_hf_trunc_and_the_shared_body_implement_every_member():
    for cls in (HFTruncLM, SharedBodyLM):
        assert TruncLM in cls.__mro__  # declared, not only shaped alike
        assert not cls.__abstractmethods__, f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} abstract"


def test_a_backend_missing_a_member_fails_when_it_is_built():
    """On lm-eval's HFLM, as hf-trunc is: the metaclasses combine, and the missing member is named at construction
    (before HFLM loads anything)."""
    members = {name: getattr(HFTruncLM, name) for name in MEMBERS if name != "clear_cache"}
    partial = type("Partial", (CountsRequests, HFLM, TruncLM), members)
    with pytest.raises(TypeError, match="clear_cache"):
        partial(pretrained="never-loaded")


def test_the_vllm_lm_implements_every_member():
    """vLLM is not installed here: read the class vllm_lm builds from the source."""
    function = ast.parse(inspect.getsource(vllm_backend._trunc_vllm_class)).body[0]
    cls = next(node for node in ast.walk(function) if isinstance(node, ast.ClassDef) and node.name == "TruncVLLM")
    bases = [getattr(base, "id", None) for base in cls.bases]
    assert "TruncLM" in bases and bases.index("CountsRequests") < bases.index("VLLM")  # counting wraps lm-eval's calls
    defined = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)} | COUNTED
    assigned = {target.id for node in cls.body if isinstance(node, ast.Assign) for target in node.targets}
    assigned |= {target.attr for node in ast.walk(cls) if isinstance(node, ast.Assign) for target in node.targets
                 if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self"}
    assert set(MEMBERS) <= defined | assigned


class Scorer:
    def loglikelihood(self, requests, disable_tqdm=False):
        return [(0.0, True)] * len(requests)

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [0.0] * len(requests)

    def generate_until(self, requests, disable_tqdm=False):
        return [""] * len(requests)


def test_counts_requests_counts_what_lm_eval_hands_over_by_type():
    lm = type("Counted", (CountsRequests, Scorer), {})()
    assert lm.loglikelihood([1, 2, 3]) == [(0.0, True)] * 3 and lm.generate_until([1], disable_tqdm=True) == [""]
    lm.loglikelihood_rolling([1, 2])
    assert lm.requests_scored == {"loglikelihood": 3, "generate_until": 1, "loglikelihood_rolling": 2}
    lm.requests_scored.clear()
    assert sum(lm.requests_scored.values()) == 0
