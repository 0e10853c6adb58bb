"""`hf-trunc`: lm-eval's HF model with dimensions of the final hidden state zeroed.

Follows lm-eval's own `steered` model: a subclass of HFLM that hooks the loaded model. It takes
`drop=` (a drop spec), `at=` (post-norm | pre-norm), `seed=` and `quantization=` (bnb-8bit | bnb-4bit)
in model_args, and accepts
llmtrunc's model aliases as `pretrained=`. With `drop=none` no hook is attached at all, so the
computation is plain lm-eval HF, bit for bit.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from llmtrunc.llm import hooks
from llmtrunc.llm.models import MODELS, resolve_model
from llmtrunc.llm.quantization import QuantizedLoadMixin
from llmtrunc.spec import DropSpec, Mask, parse_drop


@register_model("hf-trunc")
class HFTruncLM(QuantizedLoadMixin, HFLM):
    def __init__(self, pretrained, drop: str | DropSpec = "none", at: str = "post-norm", seed: int | None = None, **kwargs):
        if isinstance(pretrained, str) and pretrained in MODELS:
            ref = resolve_model(pretrained)
            pretrained = ref.pretrained
            if ref.gguf_file:
                kwargs.setdefault("gguf_file", ref.gguf_file)
        super().__init__(pretrained=pretrained, **kwargs)
        self.drop_hooks: hooks.Truncation | None = None  # not `truncation`: HFLM uses that name
        spec = drop if isinstance(drop, DropSpec) else parse_drop(str(drop), None if seed is None else int(seed))
        self.set_drop(spec, at)

    @property
    def hidden_size(self) -> int:
        return hooks.hidden_size(self.model)

    def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
        """Replace the current truncation (one model load serves many drop conditions)."""
        replacement = hooks.attach(self.model, spec.mask(self.hidden_size), at)  # validates before any change
        if self.drop_hooks is not None:
            self.drop_hooks.remove()
        self.drop, self.at, self.drop_hooks = spec, at, replacement
        return replacement.mask
