"""The LM interface the runner's LLM cells need (llmtrunc.llm.evaluate.LLMCompute), one for every backend.

hf-trunc (llmtrunc.llm.hf_trunc.HFTruncLM, and its compute-once subclass SharedBodyLM) and the vLLM backend's
LM (llmtrunc.llm.vllm_backend) implement it; LLMCompute relies on it instead of probing for attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from llmtrunc.profile import Profile
    from llmtrunc.spec import DropSpec, Mask


@runtime_checkable
class TruncLM(Protocol):
    """An lm-eval LM that scores a model with one drop condition at a time."""

    shared: bool  # whether the conditions of a group share the model's computation (records: compute)
    record_extra: dict[str, Any]  # the backend's own record fields (vLLM: engine version, export method, check)

    @property
    def compute(self) -> str:
        """How the current group's conditions are computed: "shared" or "separate" (records: compute)."""

    @property
    def hidden_size(self) -> int:
        """The width of the final hidden state the drops act on."""

    def mask_for(self, spec: DropSpec, at: str) -> Mask:
        """The dimensions `spec` drops at `at` (against the model's activation profile where it needs one)."""

    def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
        """Make `spec` at `at` the condition the next evaluation scores; its mask."""

    def profile(self, at: str) -> Profile:
        """The activation profile at `at` that profile-based drops resolve against."""

    def share(self, conditions: list[tuple[DropSpec, str]]) -> None:
        """The conditions of one group, announced before the first is scored (a backend may compute them together)."""

    def clear_cache(self) -> None:
        """Forget what was kept for the group just scored."""
