"""TruncLM, the LM interface of the runner's LLM cells: hf-trunc and the vLLM backend implement all of it."""

import ast
import inspect

from llmtrunc.llm import vllm_backend
from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.llm.protocol import TruncLM
from llmtrunc.llm.shared_body import SharedBodyLM

MEMBERS = ("shared", "compute", "record_extra", "hidden_size", "mask_for", "set_drop", "profile", "share", "clear_cache")


def test_the_members_are_the_protocols():
    declared = {name for name in vars(TruncLM) if not name.startswith("_")} | set(TruncLM.__annotations__)
    assert declared == set(MEMBERS)


def test_hf_trunc_and_the_shared_body_implement_every_member():
    for cls in (HFTruncLM, SharedBodyLM):
        assert TruncLM in cls.__mro__  # declared, not only shaped alike
        for name in MEMBERS:
            owner = next(c for c in cls.__mro__ if name in vars(c))
            assert owner is not TruncLM, f"{cls.__name__}.{name} is the protocol's stub"


def test_the_vllm_lm_implements_every_member():
    """vLLM is not installed here: read the class vllm_lm builds from the source."""
    function = ast.parse(inspect.getsource(vllm_backend._trunc_vllm_class)).body[0]
    cls = next(node for node in ast.walk(function) if isinstance(node, ast.ClassDef) and node.name == "TruncVLLM")
    assert "TruncLM" in [getattr(base, "id", None) for base in cls.bases]
    defined = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    assigned = {target.id for node in cls.body if isinstance(node, ast.Assign) for target in node.targets}
    assigned |= {target.attr for node in ast.walk(cls) if isinstance(node, ast.Assign) for target in node.targets
                 if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self"}
    assert set(MEMBERS) <= defined | assigned
