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

Where it runs is the installed bitsandbytes' business: since 0.45 it has CPU kernels for both (0.50.2: int8
matmuls, NF4 with a bfloat16 compute dtype), older releases and some devices have none. So nothing is refused
by device: `check_available` builds one small layer of the kind transformers converts, quantised onto the
device the model will run on, and runs it; only a failure there refuses, in one line with bitsandbytes' reason.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

from llmtrunc.errors import LLMTruncError

LABELS = ("bnb-8bit", "bnb-4bit")
INSTALL_HINT = "pip install 'llmtrunc[quant]'"


def quantization_label(load_in_8bit: bool = False, load_in_4bit: bool = False) -> str | None:
    """The label stored in results: None, "bnb-8bit" or "bnb-4bit"."""
    if load_in_8bit and load_in_4bit:
        raise LLMTruncError("choose one of --load-in-8bit and --load-in-4bit, not both")
    return "bnb-8bit" if load_in_8bit else "bnb-4bit" if load_in_4bit else None


def check_available(label: str, device: str = "cpu") -> None:
    """One-line errors for what makes bitsandbytes loading impossible here: an unknown label, no bitsandbytes, or
    an installed bitsandbytes that cannot run `label` layers on `device` (`probe`)."""
    if label not in LABELS:
        raise LLMTruncError(f"unknown quantization {label!r}: choose {' or '.join(LABELS)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LLMTruncError(f"{label} loading needs bitsandbytes, an optional extra: {INSTALL_HINT}")
    why = probe(label, str(device))
    if why:
        raise LLMTruncError(f"{label} loading on {device}: the installed bitsandbytes cannot run it ({why})")


@functools.cache
def probe(label: str, device: str) -> str | None:
    """Why the installed bitsandbytes cannot run `label` on `device` (None: it can): a 64 x 32 layer of the kind
    transformers builds for it (Linear8bitLt without fp16 weights, NF4 Linear4bit), quantised onto the device as
    `.to(device)` does on load, then one forward pass."""
    import torch

    bnb = import_bitsandbytes()
    try:
        if label == "bnb-8bit":
            layer = bnb.nn.Linear8bitLt(64, 32, bias=False, has_fp16_weights=False)
        else:
            layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        with torch.no_grad():
            layer.to(device)(torch.ones(1, 64, device=device))
    except Exception as exc:  # whatever the backend raises: its first line is the reason
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


class _Int8CastNote(logging.Filter):
    """bitsandbytes logs "MatMul8bitLt: inputs will be cast from <dtype> to float16" at every int8 matmul whose
    input is not float16 (210 lines per SmolLM2 forward pass). The cast is LLM.int8's design, not an event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def import_bitsandbytes():
    """bitsandbytes, imported without its offline noise: on CPUs with AVX512-BF16 it tries to fetch a 4-bit kernel
    from the Hugging Face Hub at import and logs the failure (its built-in CPU kernel runs instead); and without
    the per-matmul int8 cast note (`_Int8CastNote`)."""
    hub_kernel = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = hub_kernel.level
    hub_kernel.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    finally:
        hub_kernel.setLevel(level)
    casts = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _Int8CastNote) for f in casts.filters):
        casts.addFilter(_Int8CastNote())
    return bitsandbytes


def bnb_config(label: str, compute_dtype: str = "bfloat16", device: str = "cpu"):
    """transformers.BitsAndBytesConfig for `label` (4-bit: NF4, double quantisation, `compute_dtype`) on `device`."""
    check_available(label, device)
    import torch
    from transformers import BitsAndBytesConfig

    if label == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    dtype = getattr(torch, compute_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise LLMTruncError(f"unknown 4-bit compute dtype {compute_dtype!r}: use bfloat16, float16 or float32")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def hf_model_kwargs(load_in_8bit: bool = False, load_in_4bit: bool = False,
                    device: str = "cpu") -> tuple[dict[str, Any], str | None]:
    """(model args for hf-trunc, results label). Checks availability on `device` now, before any model load.

    The args are `{"quantization": "bnb-8bit"}` (empty when not quantised): a plain string, so it
    also works as `--model_args ...,quantization=bnb-4bit` on lm-eval's CLI, and needs
    `QuantizedLoadMixin` among HFTruncLM's bases.
    """
    label = quantization_label(load_in_8bit, load_in_4bit)
    if label is None:
        return {}, None
    check_available(label, device)
    return {"quantization": label}, label
