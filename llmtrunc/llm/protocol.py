"""The LM interface the runner's LLM cells need (llmtrunc.llm.evaluate.LLMCompute), one for every backend.

hf-trunc (llmtrunc.llm.hf_trunc.HFTruncLM, and its compute-once subclass SharedBodyLM) and the vLLM backend's
LM (llmtrunc.llm.vllm_backend) implement it; LLMCompute relies on it instead of probing for attributes. An abstract
base class, as lm-eval's own LM is: a backend that leaves a member out fails when it is built, not when a cell
reads a None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmtrunc.profile import Profile
    from llmtrunc.spec import DropSpec, Mask


class TruncLM(ABC):
    """An lm-eval LM that scores a model with one drop condition at a time."""

    @property
    @abstractmethod
    def shared(self) -> bool:
        """Whether the conditions of a group share the model's computation (records: compute)."""

    @property
    @abstractmethod
    def compute(self) -> str:
        """How the current group's conditions are computed: "shared" or "separate" (records: compute)."""

    @property
    @abstractmethod
    def record_extra(self) -> dict[str, Any]:
        """The backend's own record fields (vLLM: engine version, export method, check)."""

    @property
    @abstractmethod
    def requests_scored(self) -> Counter:
        """Requests lm-eval handed this process, by type (CountsRequests)."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """The width of the final hidden state the drops act on."""

    @abstractmethod
    def mask_for(self, spec: DropSpec, at: str) -> Mask:
        """The dimensions `spec` drops at `at` (against the model's activation profile where it needs one)."""

    @abstractmethod
    def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
        """Make `spec` at `at` the condition the next evaluation scores; its mask."""

    @abstractmethod
    def profile(self, at: str) -> Profile:
        """The activation profile at `at` that profile-based drops resolve against."""

    @abstractmethod
    def share(self, conditions: list[tuple[DropSpec, str]]) -> None:
        """The conditions of one group, announced before the first is scored (a backend may compute them together)."""

    @abstractmethod
    def clear_cache(self) -> None:
        """Forget what was kept for the group just scored."""


class CountsRequests:
    """Counts the requests lm-eval hands an LM, by request type: under data parallel, this process's share
    (LLMCompute gathers the counts; records carry them as `requests_per_process`). Put it before the lm-eval
    class in the bases."""

    _requests_scored: Counter | None = None

    @property
    def requests_scored(self) -> Counter:
        if self._requests_scored is None:
            self._requests_scored = Counter()
        return self._requests_scored

    def loglikelihood(self, requests, *args, **kwargs):
        self.requests_scored["loglikelihood"] += len(requests)
        return super().loglikelihood(requests, *args, **kwargs)

    def loglikelihood_rolling(self, requests, *args, **kwargs):
        self.requests_scored["loglikelihood_rolling"] += len(requests)
        return super().loglikelihood_rolling(requests, *args, **kwargs)

    def generate_until(self, requests, *args, **kwargs):
        self.requests_scored["generate_until"] += len(requests)
        return super().generate_until(requests, *args, **kwargs)
