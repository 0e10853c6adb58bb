"""The activation profile of a causal LM: its final hidden state averaged over calibration text.

Outlier- and magnitude-based drops (llmtrunc.spec) resolve against it. The calibration is the first
`tokens` tokens of a text file (default: the data directory's wikitext-2 test text), tokenised
without special tokens and run through the model in consecutive chunks of `chunk` tokens (at most
the model's context), one sequence per chunk. At each position the profile is the per-dimension
mean and mean |activation| over every calibration token of the untouched state the hooks act on, read
where they act (llmtrunc.llm.architectures.POSITION_MODULES): post-norm the LM head's input (the final
norm's output), pre-norm the final norm's input.

Profiles are cached (llmtrunc.profile.ProfileCache) by everything that changes them: the model
(pretrained, GGUF file, revision, loaded dtype, quantisation), the position, the calibration file's
SHA-256, the token count and the chunk length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from llmtrunc.data import data_file
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import file_digest
from llmtrunc.profile import Profile, ProfileCache

if TYPE_CHECKING:  # torch stays unimported until a profile is computed: building cells needs only the key
    from torch import nn

DEFAULT_FILE = "wikitext2_raw/wiki.test.raw"
DEFAULT_TOKENS = 8192
DEFAULT_CHUNK = 1024


@dataclass(frozen=True)
class Calibration:
    """Which text a profile is computed on; `path` None is the data directory's wikitext-2 test text."""

    path: str | None = None
    tokens: int = DEFAULT_TOKENS
    chunk: int = DEFAULT_CHUNK

    @classmethod
    def of(cls, path: str | None = None, tokens: int | None = None) -> Calibration:
        """From a command's or model_args' settings: None keeps the default."""
        return cls(path, DEFAULT_TOKENS if tokens is None else int(tokens))

    def __post_init__(self):
        for name in ("tokens", "chunk"):
            if int(getattr(self, name)) <= 0:
                raise LLMTruncError(f"calibration {name} must be positive, got {getattr(self, name)}")

    @property
    def source(self) -> str:
        return self.path or DEFAULT_FILE

    def file(self) -> Path:
        """The text file, which must exist (found through the data directory by default)."""
        if self.path is None:
            return data_file(DEFAULT_FILE)
        if not Path(self.path).is_file():
            raise LLMTruncError(f"calibration file not found: {self.path}")
        return Path(self.path)

    def key(self) -> dict[str, Any]:
        """What a profile depends on besides model and position: the text's content, not its location."""
        return {"sha256": file_digest(self.file()), "tokens": self.tokens, "chunk": self.chunk}


def calibration_ids(tokenizer, calibration: Calibration) -> list[int]:
    """The first `tokens` token ids of the calibration text (fewer when the text is shorter)."""
    text = calibration.file().read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: calibration.tokens]
    if not ids:
        raise LLMTruncError(f"calibration file {calibration.source} holds no tokens")
    return ids


def compute_profile(model: nn.Module, tokenizer, calibration: Calibration, at: str, max_length: int) -> Profile:
    """The profile at `at`, from one decoder pass per chunk; `model` must carry no drop hooks."""
    import torch

    from llmtrunc.llm.architectures import for_model

    module = for_model(model).position_module(model, at)
    ids = calibration_ids(tokenizer, calibration)
    chunk = min(calibration.chunk, max_length)
    sums: list = []

    def accumulate(module, args) -> None:
        x = args[0].detach().to(torch.float64).reshape(-1, args[0].shape[-1])
        sums.append(torch.stack([x.sum(0), x.abs().sum(0)]).cpu())

    handle = module.register_forward_pre_hook(accumulate, prepend=True)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(ids), chunk):
                model(input_ids=torch.tensor([ids[start: start + chunk]], device=device), use_cache=False)
    finally:
        handle.remove()
    total = torch.stack(sums).sum(0) / len(ids)
    return Profile(total[0].numpy(), total[1].numpy(),
                   {"source": calibration.source, **calibration.key(), "tokens": len(ids), "chunk": chunk, "position": at})


def model_profile(model: nn.Module, tokenizer, identity: Mapping[str, Any] | None, calibration: Calibration, at: str,
                  max_length: int, cache: ProfileCache | None = None) -> Profile:
    """The profile from the cache, else computed and cached; `identity` names the loaded model (None: not
    cached, computed here)."""
    compute = lambda: compute_profile(model, tokenizer, calibration, at, max_length)  # noqa: E731
    if identity is None:
        return compute()
    key = {**identity, "dtype": str(next(model.parameters()).dtype), "at": at, "calibration": calibration.key()}
    return (cache or ProfileCache()).get_or_compute(key, f"{Path(str(identity['pretrained'])).name}__{at}", compute)
