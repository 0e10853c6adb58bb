"""Quantised loading with bitsandbytes (8-bit / 4-bit NF4), for lm-eval's HF model and `hf-trunc`.

transformers 5 no longer takes `load_in_8bit=True` in `from_pretrained`: it needs
`quantization_config=BitsAndBytesConfig(...)`. lm-eval 0.4.13's HFLM cannot take that through
model_args either -- it always passes its own `quantization_config` (read from the checkpoint's
config) to `_create_model`, so a second one in **kwargs is a "multiple values" TypeError.
`QuantizedLoadMixin` (llmtrunc.llm.compat, with lm-eval's other internals) closes the gap: put it
before HFLM in the bases and the model arg `quantization=bnb-8bit|bnb-4bit` (which HFLM forwards
untouched to `_create_model`) becomes the BitsAndBytesConfig of `bnb_config`.

The truncation is unaffected by quantisation: bitsandbytes leaves the LM head unquantised (it is in
transformers' modules-not-to-convert), and the hooks act on the activations entering the head /
final norm, not on weights. Every result records `quantization: "bnb-8bit"` (or "bnb-4bit").
"""

from __future__ import annotations

import importlib.util
from typing import Any

from llmtrunc.errors import LLMTruncError

LABELS = ("bnb-8bit", "bnb-4bit")
INSTALL_HINT = "pip install 'llmtrunc[quant]'"


def quantization_label(load_in_8bit: bool = False, load_in_4bit: bool = False) -> str | None:
    """The label stored in results: None, "bnb-8bit" or "bnb-4bit"."""
    if load_in_8bit and load_in_4bit:
        raise LLMTruncError("choose one of --load-in-8bit and --load-in-4bit, not both")
    return "bnb-8bit" if load_in_8bit else "bnb-4bit" if load_in_4bit else None


def check_available(label: str) -> None:
    """One-line errors for what makes bitsandbytes loading impossible here."""
    if label not in LABELS:
        raise LLMTruncError(f"unknown quantization {label!r}: choose {' or '.join(LABELS)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LLMTruncError(f"{label} loading needs bitsandbytes, an optional extra: {INSTALL_HINT}")
    import torch

    if not torch.cuda.is_available():
        raise LLMTruncError(f"{label} loading needs a CUDA GPU (bitsandbytes quantised kernels); none is available")


def bnb_config(label: str, compute_dtype: str = "bfloat16"):
    """transformers.BitsAndBytesConfig for `label` (4-bit: NF4, double quantisation, `compute_dtype`)."""
    check_available(label)
    import torch
    from transformers import BitsAndBytesConfig

    if label == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    dtype = getattr(torch, compute_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise LLMTruncError(f"unknown 4-bit compute dtype {compute_dtype!r}: use bfloat16, float16 or float32")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def hf_model_kwargs(load_in_8bit: bool = False, load_in_4bit: bool = False) -> tuple[dict[str, Any], str | None]:
    """(model args for hf-trunc, results label). Checks availability now, before any model load.

    The args are `{"quantization": "bnb-8bit"}` (empty when not quantised): a plain string, so it
    also works as `--model_args ...,quantization=bnb-4bit` on lm-eval's CLI, and needs
    `QuantizedLoadMixin` among HFTruncLM's bases.
    """
    label = quantization_label(load_in_8bit, load_in_4bit)
    if label is None:
        return {}, None
    check_available(label)
    return {"quantization": label}, label
