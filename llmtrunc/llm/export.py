"""Export a truncated causal LM as an ordinary checkpoint that any engine (vLLM, TGI, transformers) loads.

Zeroing dimensions of the post-norm hidden state h before the LM head W is exactly zeroing the
matching columns of W:  W (h with h_i = 0 for i in D) = (W with W[:, i] = 0 for i in D) h.
So a post-norm drop is a weight edit of one tensor. What the export does:

* loads the model with transformers (GGUF sources through `gguf_file`, dequantised);
* unties the LM head from the input embeddings when they are tied (the head gets its own copy,
  the embeddings stay exactly as loaded) and sets `tie_word_embeddings: false`;
* zeroes the LM-head columns of the dropped dimensions -- the only tensor whose values change;
* saves safetensors, the config and the tokenizer with `save_pretrained`;
* records the drop (spec, indices, seed, position, source model) in config.json under
  `llmtrunc_drop` and in `llmtrunc_drop.json` beside it (written last: its presence marks a
  complete export).

Pre-norm drops cannot be expressed as weights: the final norm divides every dimension by the RMS
of the whole vector, so zeroing dimensions before it rescales all the others. They are refused.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.models import ModelRef
from llmtrunc.spec import DropSpec

META_KEY = "llmtrunc_drop"
META_FILE = "llmtrunc_drop.json"


def check_exportable(spec: DropSpec, at: str) -> None:
    """Refuse, in one line, what cannot be written as weights."""
    if at == "pre-norm":
        raise LLMTruncError(
            "pre-norm drops cannot be expressed as weights (the final norm rescales every dimension by the "
            "RMS of the whole vector): export and the vLLM backend support --at post-norm only; "
            "use the HF backend for pre-norm"
        )
    if at != "post-norm":
        raise LLMTruncError(f"unknown position {at!r}: choose post-norm or pre-norm")
    if spec.kind == "pca":
        raise LLMTruncError("pca:K is an encoder-only projection, not a set of LM-head columns: it cannot be exported")
    if spec.needs_profile:
        raise LLMTruncError(f"{spec.name} resolves against the model's activation profile, which export and the vLLM "
                            "backend do not compute: run it with the HF backend, or export its recorded "
                            "dropped_indices as indices:FILE")


def drop_metadata(spec: DropSpec, indices: tuple[int, ...], hidden: int, at: str,
                  source: dict[str, Any] | None = None) -> dict[str, Any]:
    from llmtrunc import provenance

    return {
        "spec": spec.name,
        "kind": spec.kind,
        "ratio": None if spec.ratio is None else float(spec.ratio),
        "seed": spec.seed,
        "at": at,
        "hidden_size": hidden,
        "n_dropped": len(indices),
        "indices": list(indices),
        "method": "lm_head columns zeroed (post-norm hidden-state dims); lm_head untied from input embeddings",
        "source": source or {},
        "versions": provenance.versions(),
        "time": provenance.now(),
    }


def _configs(config) -> list:
    found = [config]
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    if text is not None and text is not config:
        found.append(text)
    return found


@contextmanager
def _dense_for_saving(model):
    """A GGUF source, once dequantised, is a dense model that still carries its GGUF quantizer, which
    save_pretrained refuses. Hide the quantizer while saving; refuse weights still packed in GGUF blocks."""
    quantizer = getattr(model, "hf_quantizer", None)
    qconfig = getattr(model.config, "quantization_config", None)
    method = getattr(qconfig, "quant_method", None) if qconfig is not None else None
    method = qconfig.get("quant_method") if isinstance(qconfig, dict) else method
    if quantizer is None and qconfig is None:
        yield
        return
    if str(getattr(method, "value", method)) != "gguf":
        raise LLMTruncError(f"cannot export a model loaded quantised ({getattr(method, 'value', method)}): "
                            "load it in full precision (no --load-in-8bit/--load-in-4bit) to export")
    if getattr(quantizer, "packed_modules", None):
        raise LLMTruncError("the GGUF weights are still packed: load with GgufConfig(dequantize=True) to export")
    had_config = "quantization_config" in vars(model.config)
    model.hf_quantizer = None
    if had_config:
        del model.config.quantization_config
    try:
        yield
    finally:
        model.hf_quantizer = quantizer
        if had_config:
            model.config.quantization_config = qconfig


EXISTS = ("error", "overwrite", "reuse")


def _existing(out: Path, exists: str) -> bool:
    """True when `out` already holds a complete export to reuse; raises when it may not be written."""
    if exists not in EXISTS:
        raise ValueError(f"exists must be one of {EXISTS}")
    if not out.exists() or not any(out.iterdir()):
        return False
    if exists == "reuse" and read_drop(out) is not None:
        return True
    if exists == "error":
        raise LLMTruncError(f"output directory {out} is not empty: choose another --out or pass --overwrite")
    if exists == "reuse":
        raise LLMTruncError(f"{out} exists but is not a complete llmtrunc export: delete it and rerun")
    return False


def _publish(staging: Path, out: Path, exists: str) -> None:
    """Move the finished export into place atomically. Under "reuse", a concurrent writer (another
    shard) that finished first wins and ours is discarded; readers never see a partial directory."""
    try:
        staging.rename(out)  # atomic; fails when `out` exists and is not empty
        return
    except OSError:
        if exists == "reuse" and read_drop(out) is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return
        if exists != "overwrite":
            raise LLMTruncError(f"output directory {out} appeared while exporting: choose another --out") from None
    shutil.rmtree(out)
    staging.rename(out)


def export_model(model, tokenizer, spec: DropSpec, out: str | Path, at: str = "post-norm",
                 source: dict[str, Any] | None = None, exists: str = "error") -> Path:
    """Write `model` with `spec` applied to its LM head into `out`; `model` itself is left as it was.

    The head is swapped for a zeroed, untied copy only while saving, then restored, so the caller's
    model (and its tied embeddings) is unchanged afterwards. `exists`: what to do when `out` is not
    empty -- "error", "overwrite", or "reuse" (keep a complete export already there: the cache mode).
    """
    import torch
    from torch import nn

    from llmtrunc.llm import hooks
    from llmtrunc.llm.architectures import for_model

    check_exportable(spec, at)
    out = Path(out)
    if _existing(out, exists):
        return out
    arch = for_model(model)
    head = arch.find(model, "lm_head")
    hidden = hooks.hidden_size(model)
    indices = spec.mask(hidden).dropped
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != hidden:
        raise LLMTruncError(f"cannot export {type(model).__name__}: its LM head is not a plain [vocab, {hidden}] matrix "
                            "(quantised or packed heads cannot be edited)")
    meta = drop_metadata(spec, indices, hidden, at, source)

    new_weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    if indices:
        with torch.no_grad():
            new_weight[:, list(indices)] = 0
    configs = _configs(model.config)
    saved_tie = [getattr(c, arch.tied, None) for c in configs]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    head.weight = new_weight
    try:
        for c in configs:
            if hasattr(c, arch.tied):
                setattr(c, arch.tied, False)
        setattr(model.config, META_KEY, meta)
        with _dense_for_saving(model):
            model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # last: marks the export complete
        _publish(staging, out, exists)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        head.weight = weight
        for c, tie in zip(configs, saved_tie):
            if tie is not None:
                setattr(c, arch.tied, tie)
        if hasattr(model.config, META_KEY):
            delattr(model.config, META_KEY)
    return out


def load_source(ref: ModelRef, revision: str = "main", dtype: str = "auto"):
    """(model, tokenizer) on CPU with transformers; failures become one-line errors."""
    import transformers

    kwargs: dict[str, Any] = {"revision": revision}
    model_kwargs: dict[str, Any] = {}
    if ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
        # dense weights (the exported checkpoint is plain safetensors), even where GGUF kernels exist
        model_kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(ref.pretrained, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(ref.pretrained, dtype=dtype, **kwargs, **model_kwargs)
    except Exception as exc:  # hub/transformers raise many types; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMTruncError(f"cannot load model {ref.name!r}: {first}") from None
    return model.eval(), tokenizer


def source_metadata(ref: ModelRef, revision: str, dtype: str) -> dict[str, Any]:
    return {"model": ref.name, "pretrained": ref.pretrained, "gguf_file": ref.gguf_file,
            "revision": revision, "dtype": dtype}


def export(ref: ModelRef, spec: DropSpec, out: str | Path, at: str = "post-norm", revision: str = "main",
           dtype: str = "auto", exists: str = "error") -> Path:
    """Load `ref`, apply `spec` to its LM head and write the checkpoint to `out` (see export_model)."""
    check_exportable(spec, at)  # refuse before an expensive load
    out = Path(out)
    if _existing(out, exists):
        return out
    model, tokenizer = load_source(ref, revision, dtype)
    return export_model(model, tokenizer, spec, out, at, source_metadata(ref, revision, dtype), exists)


def read_drop(path: str | Path) -> dict[str, Any] | None:
    """The drop recorded in an exported checkpoint, or None when `path` is not a complete export."""
    meta = Path(path) / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else None
