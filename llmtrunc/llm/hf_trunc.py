"""`hf-trunc`: lm-eval's HF model with dimensions of the final hidden state zeroed.

Follows lm-eval's own `steered` model: a subclass of HFLM that hooks the loaded model. It takes
`drop=` (a drop spec), `at=` (post-norm | pre-norm), `seed=`, `quantization=` (bnb-8bit | bnb-4bit),
`calibration=` (a text file) and `calibration_tokens=` in model_args, and accepts
llmtrunc's model aliases as `pretrained=`. With `drop=none` no hook is attached at all, so the
computation is plain lm-eval HF, bit for bit. Profile-based drops (outliers, top:K ...) resolve
against the loaded model's activation profile at their position (llmtrunc.llm.calibration),
computed or read from the profile cache once per position. Launched as several processes (torchrun,
`accelerate launch`), it splits lm-eval's requests over them on CPUs as on GPUs (llmtrunc.parallel,
llmtrunc.llm.compat.data_parallel). lm-eval knows it as `hf-trunc` once llmtrunc.llm.compat.install has run
(at start-up: the LLM run, lm-eval's CLI wrapper).
"""

from __future__ import annotations

from contextlib import contextmanager

from lm_eval.models.huggingface import HFLM

from llmtrunc.llm import hooks
from llmtrunc.llm.architectures import check_position
from llmtrunc.llm.calibration import Calibration, model_profile
from llmtrunc.llm.compat import QuantizedLoadMixin, as_one_process, data_parallel
from llmtrunc.llm.gguf import dense_copy
from llmtrunc.llm.models import MODELS, resolve_model
from llmtrunc.llm.protocol import CountsRequests, TruncLM
from llmtrunc.parallel import processes
from llmtrunc.profile import Profile
from llmtrunc.spec import DropSpec, Mask, parse_drop


class HFTruncLM(CountsRequests, QuantizedLoadMixin, HFLM, TruncLM):
    shared = False  # every condition runs the full model (SharedBodyLM shares the body)
    compute = "separate"

    def __init__(self, pretrained, drop: str | DropSpec = "none", at: str = "post-norm", seed: int | None = None,
                 calibration: str | Calibration | None = None, calibration_tokens: int | None = None, **kwargs):
        if isinstance(pretrained, str) and pretrained in MODELS:
            ref = resolve_model(pretrained)
            pretrained = ref.pretrained
            if ref.gguf_file:
                kwargs.setdefault("gguf_file", ref.gguf_file)
        spec = drop if isinstance(drop, DropSpec) else parse_drop(str(drop), None if seed is None else int(seed))
        self.calibration = calibration if isinstance(calibration, Calibration) else Calibration.of(calibration,
                                                                                                  calibration_tokens)
        # what names the loaded weights in the profile cache (the loaded dtype is added there); a model
        # object passed in has no name that pins its weights, so its profiles are never cached
        self.identity = {"pretrained": pretrained, "gguf_file": kwargs.get("gguf_file"),
                         "revision": kwargs.get("revision", "main"),
                         "quantization": kwargs.get("quantization")} if isinstance(pretrained, str) else None
        dense = dense_copy(pretrained, kwargs["gguf_file"]) if isinstance(pretrained, str) and kwargs.get("gguf_file") \
            else None
        if dense is not None:  # a local GGUF loads from its dense copy: the same weights, config and tokenizer
            pretrained = str(dense)
            del kwargs["gguf_file"]
        processes()  # under torchrun / accelerate launch: join the process group (gloo on CPUs) before HFLM's Accelerator
        super().__init__(pretrained=pretrained, **kwargs)
        data_parallel(self)  # lm-eval splits requests over the processes only on GPUs otherwise (llmtrunc.llm.compat)
        self.drop_hooks: hooks.Truncation | None = None  # not `truncation`: HFLM uses that name
        self.profiles: dict[str, Profile] = {}
        self.set_drop(spec, at)

    @property
    def hidden_size(self) -> int:
        return hooks.hidden_size(self.model)

    def gather_object(self, obj, dst=0):
        """lm-eval's evaluator gathers every process's per-document values: in one process's order, so that N
        processes aggregate exactly as one (llmtrunc.llm.compat.as_one_process), and the senders return only once
        `dst` holds them (why: llmtrunc.parallel.Processes.gather)."""
        gathered = super().gather_object(obj, dst)
        self.barrier()
        return as_one_process(gathered)

    @property
    def record_extra(self) -> dict:
        return {}

    def share(self, conditions: list[tuple[DropSpec, str]]) -> None:
        """Nothing to share: every condition runs the full model."""

    def clear_cache(self) -> None:
        """Nothing is kept between groups."""

    def profile(self, at: str) -> Profile:
        """The model's activation profile at `at`, computed without any drop hooks (or cached) once per position."""
        if at not in self.profiles:
            with self._without_drop_hooks():
                self.profiles[at] = model_profile(self.model, self.tokenizer, self.identity, self.calibration, at,
                                                  self.max_length)
        return self.profiles[at]

    def mask_for(self, spec: DropSpec, at: str) -> Mask:
        """The dimensions `spec` drops at `at`, against this model's profile where the spec needs one."""
        check_position(at)
        return spec.mask(self.hidden_size, self.profile(at) if spec.needs_profile else None)

    @contextmanager
    def _without_drop_hooks(self):
        """The current drop's hooks step aside (shared decoding applies every row's own mask; profiles
        read the untouched states) and come back as they were."""
        if self.drop_hooks is None:
            yield
            return
        mask, at = self.drop_hooks.mask, self.at
        self.drop_hooks.remove()
        try:
            yield
        finally:
            self.drop_hooks = hooks.attach(self.model, mask, at)

    def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
        """Replace the current truncation (one model load serves many drop conditions)."""
        replacement = hooks.attach(self.model, self.mask_for(spec, at), at)  # validates before any change
        if self.drop_hooks is not None:
            self.drop_hooks.remove()
        self.drop, self.at, self.drop_hooks = spec, at, replacement
        return replacement.mask
