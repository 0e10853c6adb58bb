"""Architecture knowledge, read from the declarative files in the repository's `hooks/` folder.

Each file names, for one family, the decoder stack, the final norm and its scale convention, the
LM head, the tie flag, logit softcapping, whether compute-once scoring is exact and how a post-norm
drop can be written as weights (hooks/README.md).
`for_model` finds the model's entry by class name; an unknown class falls back to a generic search
of the usual attribute names, says so once, and is never shared-body scored.

The two positions a drop acts at are facts of the same layers: the hidden state at a position is the
input of one module (`POSITION_MODULES`), where the hooks zero it (llmtrunc.llm.hooks, shared generation)
and the activation profiles read it (llmtrunc.llm.calibration).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from llmtrunc.data import shipped_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.registry import Registry

if TYPE_CHECKING:  # torch stays unimported until a model is at hand: the CLI reads these facts to build its flags
    import torch
    from torch import nn

log = logging.getLogger(__name__)

# The module whose input is the hidden state at each position: the LM head reads the final norm's output
# (post-norm, the paper's "before projection to the vocabulary"); the final norm reads the last decoder
# layer's output (pre-norm).
POSITION_MODULES = {"post-norm": "lm_head", "pre-norm": "final_norm"}
POSITIONS = tuple(POSITION_MODULES)
# How a post-norm drop can be written as weights (llmtrunc.llm.export): zeroed entries of the final norm's
# scale (and bias), or zeroed LM-head columns. A hooks/ file lists those exact for its family.
EXPORT_METHODS = ("norm", "head")

# The generic fallback: attribute names of decoder stacks and final norms across architectures.
_DECODER_PATHS = ("model.language_model", "model", "transformer", "language_model.model", "gpt_neox")
_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")


def check_position(at: str) -> None:
    if at not in POSITION_MODULES:
        raise LLMTruncError(f"unknown position {at!r}: choose {' or '.join(POSITIONS)}")


def _get(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass(frozen=True)
class Architecture:
    """The last layers of one architecture family, as declared in hooks/<family>.yaml."""

    family: str
    architectures: tuple[str, ...]
    decoder: str
    final_norm: str
    norm: str  # rmsnorm | layernorm | unknown
    norm_scale: str  # w | 1+w
    norm_bias: bool
    lm_head: str
    tied: str  # the config flag
    logit_softcapping: str | None
    shared_body: bool
    export: tuple[str, ...] = ("head",)  # the EXPORT_METHODS exact for this family, preferred first
    shared_generation: bool = False  # generate_until: one prefill per prompt, every condition decoded from it
    shared_prefix_attention: bool = False  # shared decoding may read a prompt's cache once for all its rows
    source: str = ""  # the file it came from

    def find(self, model: nn.Module, what: str) -> nn.Module:
        from torch import nn

        module = _get(model, getattr(self, what))
        if not isinstance(module, nn.Module):
            raise LLMTruncError(f"{type(model).__name__} has no {what.replace('_', ' ')} at "
                                f"{getattr(self, what)!r} (as {self.source or 'the generic search'} says)")
        return module

    def position_module(self, model: nn.Module, at: str) -> nn.Module:
        """The module whose input is the hidden state at position `at` (POSITION_MODULES)."""
        check_position(at)
        return self.find(model, POSITION_MODULES[at])

    def softcap(self, model: nn.Module) -> float | None:
        if not self.logit_softcapping:
            return None
        return getattr(model.config.get_text_config(), self.logit_softcapping, None)

    def is_tied(self, model: nn.Module) -> bool:
        return any(bool(getattr(c, self.tied, False)) for c in (model.config, model.config.get_text_config()))

    def logits(self, model: nn.Module, states: torch.Tensor, head=None) -> torch.Tensor:
        """The model's logits from last-layer states: final norm, LM head, softcapping, called as the
        real modules so that the truncation hooks in place apply exactly as in a full forward pass.
        `head`: a function of the normed states that stands in for the LM head module."""
        logits = (head or self.find(model, "lm_head"))(self.find(model, "final_norm")(states))
        cap = self.softcap(model)
        return logits.div(cap).tanh().mul(cap) if cap else logits


def _load(path: Path) -> list[Architecture]:
    data = yaml.safe_load(path.read_text())
    overrides = data.pop("overrides", None) or {}
    names = {f.name for f in fields(Architecture)}
    unknown = set(data) - names
    if unknown:
        raise LLMTruncError(f"{path}: unknown keys {sorted(unknown)} (see hooks/README.md)")
    data["export"] = tuple(data.get("export") or ("head",))
    if set(data["export"]) - set(EXPORT_METHODS):
        raise LLMTruncError(f"{path}: export methods are {', '.join(EXPORT_METHODS)}, not {list(data['export'])}")
    if "norm" in data["export"] and data["norm"] not in ("rmsnorm", "layernorm"):
        raise LLMTruncError(f"{path}: export via norm needs a known norm (rmsnorm or layernorm), not {data['norm']!r}")
    base = Architecture(**{**data, "architectures": tuple(data["architectures"])}, source=path.name)
    return [replace(base, architectures=(cls,), **overrides.get(cls, {})) for cls in base.architectures]


@functools.cache
def registry() -> Registry[Architecture]:
    """Every class named in hooks/*.yaml -> its Architecture."""
    found: Registry[Architecture] = Registry("architecture")
    for path in sorted(shipped_dir("hooks").glob("*.yaml")):
        for arch in _load(path):
            found.register(arch.architectures[0], arch)
    return found


@functools.cache
def _generic(class_name: str, decoder: str, final_norm: str, lm_head: str) -> Architecture:
    log.warning("llmtrunc: no hooks/ file names %s; found its final norm at %s by the generic search "
                "(compute-once scoring is off for it)", class_name, final_norm)
    return Architecture("generic", (class_name,), decoder, final_norm, "unknown", "w", False, lm_head,
                        "tie_word_embeddings", None, shared_body=False)


def for_model(model: nn.Module) -> Architecture:
    from torch import nn

    known = registry().find(type(model).__name__)
    if known is not None:
        return known
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_path = next((name for name, module in model.named_modules() if module is head), None)
    if not head_path:
        raise LLMTruncError(f"cannot find the LM head of {type(model).__name__}: no output embeddings")
    for path in _DECODER_PATHS:
        decoder = _get(model, path)
        for name in _NORM_NAMES if decoder is not None else ():
            if isinstance(getattr(decoder, name, None), nn.Module):
                return _generic(type(model).__name__, path, f"{path}.{name}", head_path)
    raise LLMTruncError(
        f"cannot find the final norm of {type(model).__name__}: no hooks/ file names it and its decoder has no "
        f"`norm`/`final_layernorm`/`ln_f` module (add a hooks/<family>.yaml, see hooks/README.md)"
    )
