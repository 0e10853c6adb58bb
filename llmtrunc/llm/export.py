"""Export a truncated causal LM as an ordinary checkpoint that any engine (vLLM, TGI, transformers) loads.

A post-norm drop zeroes dimensions D of the final norm's output h, the vector the LM head W reads.
Two weight edits give exactly that; hooks/<family>.yaml (`export`) lists those exact for a family:

* `norm`: zero the norm's scale entries of D. RMSNorm's output_i = x_i / rms(x) * w_i, so w_i = 0
  zeroes dimension i and leaves every other one bit-identical (the (1 + w) convention of the Gemma
  family: w_i = -1; a LayerNorm also zeroes its bias entry). One hidden-size vector changes and
  tied embeddings stay tied, so the checkpoint is no larger than the source.
* `head`: zero the LM-head columns of D, since W (h with h_D = 0) = (W with W[:, D] = 0) h. A tied
  head is untied first (its own vocab x hidden copy, `tie_word_embeddings: false`), and an engine
  that ties head and embeddings whatever the config says (vLLM issue 6758) silently undoes it.

The default is the family's first method: norm wherever the norm is known, being never larger and
immune to that engine bug. Every export is verified before it is published: reloaded with
transformers, it must give the hook path's logits on a fixed short input (`verify`), and its tokenizer
must encode sample prompts exactly as the source's (llmtrunc.llm.tokenizer_parity: the logits check runs
on token ids, so it cannot see a tokenizer that lost BOS). The drop, the method and the verification
are recorded in config.json under `llmtrunc_drop` and in `llmtrunc_drop.json` beside it (written last:
its presence marks a complete export).

Pre-norm drops cannot be expressed as weights: the final norm divides every dimension by the RMS
of the whole vector, so zeroing dimensions before it rescales all the others. They are refused.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmtrunc.errors import LLMTruncError
from llmtrunc.files import staged_folder
from llmtrunc.llm.architectures import EXPORT_METHODS, Architecture, check_position, for_model
from llmtrunc.llm.compat import dense_for_saving
from llmtrunc.llm.gguf import dense_copy
from llmtrunc.llm.models import ModelRef
from llmtrunc.spec import DropSpec, Mask

META_KEY = "llmtrunc_drop"
META_FILE = "llmtrunc_drop.json"
FORMAT = 2  # what an export holds; 2: its tokenizer is verified (earlier exports made under transformers 5.19 lack BOS)
VIA = ("auto", *EXPORT_METHODS)
# Max |logit difference| between the reloaded export and the hook path, per unit of the largest logit.
# Both edits give the hook's hidden state bit for bit, so a correct export on the same kernels differs by 0.
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 1e-3}


def check_exportable(spec: DropSpec, at: str) -> None:
    """Refuse, in one line, what cannot be written as weights."""
    if at == "pre-norm":
        raise LLMTruncError(
            "pre-norm drops cannot be expressed as weights (the final norm rescales every dimension by the "
            "RMS of the whole vector): export and the vLLM backend support --at post-norm only; "
            "use the HF backend for pre-norm"
        )
    check_position(at)
    if spec.kind == "pca":
        raise LLMTruncError("pca:K is an encoder-only projection, not a set of dimensions: it cannot be exported")
    if spec.needs_profile:
        raise LLMTruncError(f"{spec.name} resolves against the model's activation profile, which export and the vLLM "
                            "backend do not compute: run it with the HF backend, or export its recorded "
                            "dropped_indices as indices:FILE")


def drop_metadata(spec: DropSpec, indices: tuple[int, ...], hidden: int, at: str, method: str, edit: str,
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
        "method": method,
        "edit": edit,
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


def resolve_method(arch: Architecture, via: str = "auto") -> str:
    """The export method for `arch`: `via`, which its hooks/ file must list as exact, or (auto) its first."""
    if via == "auto":
        return arch.export[0]
    if via not in EXPORT_METHODS:
        raise LLMTruncError(f"unknown export method {via!r}: choose {', '.join(VIA)}")
    if via not in arch.export:
        raise LLMTruncError(f"exporting via {via} is not exact for {arch.family} models "
                            f"({arch.source or 'no hooks/ file'} allows {', '.join(arch.export)}): use --via {arch.export[0]}")
    return via


def _edits(model, arch: Architecture, method: str, indices: tuple[int, ...]) -> tuple[list, str]:
    """The (module, parameter name, edited copy) swaps that write the drop via `method`, and what they do."""
    import torch

    from llmtrunc.llm import hooks

    hidden, index = hooks.hidden_size(model), list(indices)
    module = arch.find(model, "lm_head" if method == "head" else "final_norm")
    weight = getattr(module, "weight", None)
    shape = (weight.shape[0], hidden) if method == "head" and isinstance(weight, torch.Tensor) else (hidden,)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != shape:
        what = "LM head" if method == "head" else "final norm's scale"
        raise LLMTruncError(f"cannot export {type(model).__name__} via {method}: its {what} is not a plain "
                            f"[{', '.join(map(str, shape))}] tensor (quantised and packed weights cannot be edited)")
    new = weight.detach().clone()
    with torch.no_grad():
        if method == "head":
            new[:, index] = 0
        else:
            new[index] = -1 if arch.norm_scale == "1+w" else 0
    path = arch.lm_head if method == "head" else arch.final_norm
    value = "0" if method == "head" or arch.norm_scale == "w" else "-1 (scale 1 + w)"
    edits = [(module, "weight", new)]
    edit = f"{path}.weight[{':, ' if method == 'head' else ''}i] = {value}"
    if method == "norm" and arch.norm_bias:
        bias = module.bias.detach().clone()
        with torch.no_grad():
            bias[index] = 0
        edits.append((module, "bias", bias))
        edit += f" and {path}.bias[i] = 0"
    edit += " for every dropped i"
    if method == "head" and arch.is_tied(model):
        edit += f"; {path} untied from the input embeddings"
    return edits, edit


@contextmanager
def _applied(model, arch: Architecture, edits: list, untie: bool):
    """The model with `edits` swapped in (and the head untied) inside the block, exactly as before after it."""
    from torch import nn

    configs = _configs(model.config)
    saved = [(module, name, getattr(module, name)) for module, name, _ in edits]
    saved_tie = [getattr(c, arch.tied, None) for c in configs]
    try:
        for module, name, tensor in edits:
            setattr(module, name, nn.Parameter(tensor, requires_grad=False))
        for c in configs if untie else ():
            if hasattr(c, arch.tied):
                setattr(c, arch.tied, False)
        yield
    finally:
        for module, name, param in saved:
            setattr(module, name, param)
        for c, tie in zip(configs, saved_tie):
            if tie is not None:
                setattr(c, arch.tied, tie)


def verification_ids(vocab_size: int):
    """The fixed short input every export is checked on: 16 token ids spread over the vocabulary."""
    import torch

    return torch.tensor([[(7 + 7919 * i) % vocab_size for i in range(16)]])


def _logits(model, ids, mask: Mask | None = None):
    import torch

    from llmtrunc.llm import hooks

    device = next(model.parameters()).device
    with torch.no_grad():
        if mask is None:
            return model(ids.to(device)).logits[0].float().cpu()
        with hooks.truncated(model, mask, "post-norm"):
            return model(ids.to(device)).logits[0].float().cpu()


def _token_logprobs(logits, ids) -> list[float]:
    """log p(ids[t + 1] | ids[:t + 1]) for every t: what an engine's prompt logprobs are compared with."""
    import torch

    targets = ids[0, 1:]
    return torch.log_softmax(logits[:-1], -1).gather(-1, targets[:, None])[:, 0].tolist()


def verify(folder: Path, model, reference, ids, tolerance: float) -> float:
    """Reload the checkpoint in `folder` with transformers; the max |logit difference| from `reference`
    (the hook path on the source model), refused in one line above `tolerance`."""
    import transformers

    exported = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=model.dtype).eval()
    exported.to(next(model.parameters()).device)
    diff = float((_logits(exported, ids) - reference).abs().max())
    del exported
    if not diff <= tolerance:  # also refuses NaN
        raise LLMTruncError(f"the export does not reproduce the hook path: max |logit difference| {diff:.3g} on the "
                            f"verification input (tolerance {tolerance:g}); nothing was written")
    return diff


def export_model(model, tokenizer, spec: DropSpec, out: str | Path, at: str = "post-norm",
                 source: dict[str, Any] | None = None, exists: str = "error", via: str = "auto") -> Path:
    """Write `model` with `spec` applied via `via` (norm | head | auto) into `out`, verified against the hook
    path first; `model` itself is left as it was.

    The edited tensors are swapped in only while saving, then restored, so the caller's model (and
    its tied embeddings) is unchanged afterwards. `exists`: what to do when `out` is not empty --
    "error", "overwrite", or "reuse" (keep a complete export already there: the cache mode).
    """
    from llmtrunc.llm import hooks, tokenizer_parity

    check_exportable(spec, at)
    out = Path(out)
    if _existing(out, exists):
        return out
    arch = for_model(model)
    method = resolve_method(arch, via)
    hidden = hooks.hidden_size(model)
    mask = spec.mask(hidden)
    edits, edit = _edits(model, arch, method, mask.dropped)
    meta = {**drop_metadata(spec, mask.dropped, hidden, at, method, edit, source), "format": FORMAT}
    ids = verification_ids(model.config.get_text_config().vocab_size)
    reference, untruncated = _logits(model, ids, mask), _logits(model, ids)
    tolerance = TOLERANCE.get(str(model.dtype).removeprefix("torch."), 1e-2) * max(1.0, float(reference.abs().max()))
    publish = staged_folder(out, complete=lambda folder: exists == "reuse" and read_drop(folder) is not None,
                            replace=exists == "overwrite")  # under "reuse", a shard that finished first wins
    try:
        with publish as staging:
            with _applied(model, arch, edits, untie=method == "head"), dense_for_saving(model):
                model.save_pretrained(staging)
            diff = verify(staging, model, reference, ids, tolerance)
            meta["verification"] = {"input_ids": ids[0].tolist(), "max_abs_logit_diff": diff, "tolerance": tolerance,
                                    "token_logprobs": _token_logprobs(reference, ids),
                                    "untruncated_token_logprobs": _token_logprobs(untruncated, ids)}
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
                meta["verification"]["tokenizer"] = tokenizer_parity.verify(tokenizer, staging, "export")
            _record(staging, meta)
    except FileExistsError:
        raise LLMTruncError(f"output directory {out} appeared while exporting: choose another --out") from None
    return out


def _record(folder: Path, meta: dict[str, Any]) -> None:
    """The drop under `llmtrunc_drop` in config.json, and llmtrunc_drop.json beside it (last: marks it complete)."""
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config[META_KEY] = meta
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_source(ref: ModelRef, revision: str = "main", dtype: str = "auto"):
    """(model, tokenizer) on CPU with transformers; failures become one-line errors."""
    import transformers

    pretrained, kwargs = ref.pretrained, {"revision": revision}
    model_kwargs: dict[str, Any] = {}
    dense = dense_copy(ref.pretrained, ref.gguf_file) if ref.gguf_file else None
    if dense is not None:  # a local GGUF: its dense copy (llmtrunc.llm.gguf)
        pretrained = str(dense)
    elif ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
        # dense weights (the exported checkpoint is plain safetensors), even where GGUF kernels exist
        model_kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(pretrained, dtype=dtype, **kwargs, **model_kwargs)
    except Exception as exc:  # hub/transformers raise many types; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMTruncError(f"cannot load model {ref.name!r}: {first}") from None
    return model.eval(), tokenizer


def source_metadata(ref: ModelRef, revision: str, dtype: str) -> dict[str, Any]:
    return {"model": ref.name, "pretrained": ref.pretrained, "gguf_file": ref.gguf_file,
            "revision": revision, "dtype": dtype}


def export(ref: ModelRef, spec: DropSpec, out: str | Path, at: str = "post-norm", revision: str = "main",
           dtype: str = "auto", exists: str = "error", via: str = "auto") -> Path:
    """Load `ref`, write `spec` into its weights via `via` and publish the verified checkpoint in `out`."""
    check_exportable(spec, at)  # refuse before an expensive load
    if via not in VIA:
        raise LLMTruncError(f"unknown export method {via!r}: choose {', '.join(VIA)}")
    out = Path(out)
    if _existing(out, exists):
        return out
    model, tokenizer = load_source(ref, revision, dtype)
    return export_model(model, tokenizer, spec, out, at, source_metadata(ref, revision, dtype), exists, via)


def read_drop(path: str | Path) -> dict[str, Any] | None:
    """The drop recorded in an exported checkpoint, or None when `path` is not a complete export."""
    meta = Path(path) / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else None
