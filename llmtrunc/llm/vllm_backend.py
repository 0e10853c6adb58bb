"""`--backend vllm`: run lm-eval's vLLM model on an exported truncated checkpoint.

vLLM compiles its own forward pass, so hooks cannot reach it; a post-norm drop is instead written
into the weights (`llmtrunc.export`: zeroed LM-head columns, which is exact) and vLLM loads that
checkpoint. Exports are cached under `export_root`, one directory per (model, revision, dtype,
drop, position), and reused by later runs and by every shard of a sweep. Pre-norm drops cannot be
written as weights and are refused. vLLM is an optional extra, imported only when used.

One vLLM engine serves one drop (the drop is in its weights): build one LM per drop with
`vllm_lm`; its `set_drop` accepts only that drop, so code written for hf-trunc's
one-load-many-drops loop fails loudly instead of silently scoring the wrong weights.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Mapping

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.export import check_exportable, read_drop
from llmtrunc.llm.models import ModelRef, resolve_model
from llmtrunc.record import digest, drop_key
from llmtrunc.spec import DropSpec, Mask

INSTALL_HINT = "vLLM backend needs the optional extra: pip install 'llmtrunc[vllm]'"
DEFAULT_EXPORT_ROOT = "exports"


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise LLMTruncError(INSTALL_HINT)


def _settings_dict(settings: Any) -> dict[str, Any]:
    """RunSettings or a mapping with at least `model` (a ModelRef, its dict, or a name) -> plain dict."""
    if is_dataclass(settings) and not isinstance(settings, type):
        data = {f: getattr(settings, f) for f in settings.__dataclass_fields__}
    elif isinstance(settings, Mapping):
        data = dict(settings)
    else:
        raise LLMTruncError(f"vllm_lm needs run settings (RunSettings or a dict), got {type(settings).__name__}")
    model = data.get("model")
    if isinstance(model, str):
        data["model"] = resolve_model(model)
    elif isinstance(model, Mapping):
        data["model"] = ModelRef(**model)
    elif not isinstance(model, ModelRef):
        raise LLMTruncError("run settings name no model")
    return data


def export_key(settings: Any, spec: DropSpec, at: str = "post-norm") -> dict[str, Any]:
    data = _settings_dict(settings)
    ref: ModelRef = data["model"]
    return {"pretrained": ref.pretrained, "gguf_file": ref.gguf_file, "revision": data.get("revision", "main"),
            "dtype": data.get("dtype", "auto"), "drop": drop_key(spec), "at": at}


def export_dir(settings: Any, spec: DropSpec, at: str, export_root: str | Path) -> Path:
    """Where the cached export of (model, drop) lives: readable prefix + hash of everything that matters."""
    key = export_key(settings, spec, at)
    short = digest(key, 12)
    name = _settings_dict(settings)["model"].name
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(name).name}__{spec.name}")[:80]
    return Path(export_root) / f"{readable}__{short}"


def cached_export(settings: Any, spec: DropSpec, at: str = "post-norm",
                  export_root: str | Path = DEFAULT_EXPORT_ROOT) -> Path:
    """The exported checkpoint for (model, drop), written on first use and reused afterwards."""
    from llmtrunc.llm.export import export

    check_exportable(spec, at)
    data = _settings_dict(settings)
    target = export_dir(settings, spec, at, export_root)
    if read_drop(target) is not None:  # llmtrunc_drop.json is written last: present = complete
        return target
    # "reuse": shards of a sweep may export the same drop at once; the first to finish wins
    return export(data["model"], spec, target, at, data.get("revision", "main"), data.get("dtype", "auto"),
                  exists="reuse")


def vllm_model_args(pretrained: str | Path, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                    dtype: str = "auto", batch_size: str | int = "auto", revision: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    """Keyword arguments for lm-eval's `VLLM` (also valid as `--model vllm --model_args k=v,...`)."""
    tp, dp = int(tensor_parallel_size), int(data_parallel_size)
    if tp < 1 or dp < 1:
        raise LLMTruncError(f"tensor_parallel_size and data_parallel_size must be >= 1, got {tp} and {dp}")
    args = {"pretrained": str(pretrained), "tensor_parallel_size": tp, "data_parallel_size": dp,
            "dtype": dtype, "batch_size": batch_size}
    if revision and revision != "main":
        args["revision"] = revision
    args.update(extra)
    return args


def model_args_string(args: Mapping[str, Any]) -> str:
    """`k=v,k=v` for lm-eval's CLI."""
    return ",".join(f"{k}={v}" for k, v in args.items())


def _hidden_size(pretrained: str | Path, revision: str | None = None) -> int:
    config_file = Path(str(pretrained)) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        text = config.get("text_config") or {}
        size = config.get("hidden_size") or text.get("hidden_size")
        if size:
            return int(size)
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(pretrained), revision=revision or "main")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMTruncError(f"cannot read the config of {pretrained}: {first}") from None
    return int(config.get_text_config().hidden_size)


def _trunc_vllm_class():
    from lm_eval.models.vllm_causallms import VLLM

    class TruncVLLM(VLLM):
        """lm-eval's VLLM on a checkpoint whose weights already carry one drop."""

        def __init__(self, *args, llmtrunc_spec: DropSpec, llmtrunc_at: str, llmtrunc_mask: Mask, **kwargs):
            super().__init__(*args, **kwargs)
            self.drop, self.at, self.mask = llmtrunc_spec, llmtrunc_at, llmtrunc_mask
            self.backend = "vllm"

        @property
        def hidden_size(self) -> int:
            return self.mask.dim

        def mask_for(self, spec: DropSpec, at: str) -> Mask:
            return spec.mask(self.hidden_size)  # profile-based drops never get here (check_exportable)

        def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
            if spec != self.drop or (spec.kind != "none" and at != self.at):
                raise LLMTruncError(f"this vLLM engine holds drop {self.drop.name} in its weights, not {spec.name} "
                                    f"at {at}: build one LM per drop with llmtrunc.vllm_backend.vllm_lm")
            return self.mask

    return TruncVLLM


def vllm_lm(settings: Any, spec: DropSpec, at: str = "post-norm", tensor_parallel_size: int = 1,
            data_parallel_size: int = 1, export_root: str | Path = DEFAULT_EXPORT_ROOT, **vllm_kwargs: Any):
    """An lm-eval LM (lm-eval's VLLM) that scores `settings.model` with `spec` applied at `at`.

    `settings`: llmtrunc.evaluate.RunSettings, or a dict with `model` (alias/ModelRef) and optionally
    `revision`, `dtype`, `batch_size`. The drop is exported once (cached by model key + drop under
    `export_root`); drop `none` on a non-GGUF model runs the original checkpoint directly. Extra
    keyword arguments go to VLLM (e.g. gpu_memory_utilization=0.9, max_model_len=4096).
    The returned object also has `hidden_size`, `set_drop(spec, at)` (same drop only) and `backend="vllm"`,
    so llmtrunc.evaluate.run_cell can use it like hf-trunc.
    """
    check_exportable(spec, at)
    require_vllm()
    data = _settings_dict(settings)
    ref: ModelRef = data["model"]
    dtype = data.get("dtype", "auto")
    batch = data.get("batch_size", "auto")
    batch = "auto" if str(batch) in ("1", "auto") else batch  # vLLM batches itself; hf's default 1 would throttle it
    if spec.kind == "none" and not ref.gguf_file:
        checkpoint, revision = ref.pretrained, data.get("revision", "main")
    else:
        checkpoint, revision = cached_export(data, spec, at, export_root), None
    hidden = _hidden_size(checkpoint, revision)
    mask = spec.mask(hidden)
    recorded = read_drop(checkpoint) if Path(str(checkpoint)).is_dir() else None
    if recorded is not None and tuple(recorded["indices"]) != mask.dropped:
        raise LLMTruncError(f"export {checkpoint} records other indices than {spec.name}: delete it and rerun")
    args = vllm_model_args(checkpoint, tensor_parallel_size, data_parallel_size, dtype, batch, revision, **vllm_kwargs)
    cls = _trunc_vllm_class()
    return cls(**args, llmtrunc_spec=spec, llmtrunc_at=at, llmtrunc_mask=mask)
