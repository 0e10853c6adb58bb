"""The local_* lm-eval tasks reproduce the standard lm-eval 0.4.13 tasks on the shared data.

Each local task is built through llmtrunc.llm.tasks.task_manager(); its standard counterpart is built
from lm-eval's own YAML (lm_eval.tasks._yaml_loader.load_yaml) with only the data source swapped
for the same offline loader, so both see the same documents and every other setting comes from
the standard config. No model is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtrunc.llm import tasks as T
from llmtrunc.data import ENV_VAR, find_data_dir
from llmtrunc.errors import LLMTruncError

LM_EVAL_TASKS = Path(__import__("lm_eval.tasks", fromlist=["x"]).__file__).resolve().parent
DATA = find_data_dir()
pytestmark = pytest.mark.skipif(DATA is None or not DATA.is_dir(), reason="shared benchmark data not available")

CONFIG_FIELDS = (
    "output_type", "training_split", "validation_split", "test_split", "fewshot_split", "num_fewshot",
    "description", "target_delimiter", "fewshot_delimiter", "fewshot_config", "generation_kwargs",
    "repeats", "filter_list", "metric_list", "should_decontaminate", "process_docs", "doc_to_image",
    "doc_to_audio", "unsafe_code", "gen_prefix", "use_prompt", "doc_to_decontamination_query",
)


@pytest.fixture(scope="module")
def tm():
    return T.task_manager()


def build_local(tm, name):
    return tm.load([name])["tasks"][name]


def build_standard(relative_yaml, local_task, **extra):
    """The standard task from lm-eval's YAML, reading the same offline data as `local_task`."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(LM_EVAL_TASKS / relative_yaml, resolve_func=True)
    for key in ("tag", "group", "task_list"):
        config.pop(key, None)
    config.update(extra)
    config["custom_dataset"] = local_task.config.custom_dataset
    config["dataset_kwargs"] = local_task.config.dataset_kwargs
    return ConfigurableTask(config=config)


def requests(task, limit=3, seed=1234):
    task.set_fewshot_seed(seed)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return [(i.request_type, i.arguments, i.idx, i.repeats) for i in task.instances]


def canonical(value):
    """Config values with functions replaced by their module, name and code, so the same function
    loaded twice (lm-eval re-executes !function modules) compares equal."""
    if callable(value) and hasattr(value, "__code__"):
        return (value.__module__, value.__qualname__, value.__code__.co_code, value.__code__.co_consts)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return canonical({k: getattr(value, k) for k in value.__dataclass_fields__})
    return value


def assert_same_task(local, standard, n_docs=25):
    for field in CONFIG_FIELDS:
        assert canonical(getattr(local.config, field)) == canonical(getattr(standard.config, field)), field
    for key in ("dataset_path", "dataset_name"):
        assert getattr(local.config, key) == getattr(standard.config, key), key
    assert local.OUTPUT_TYPE == standard.OUTPUT_TYPE
    assert list(local._metric_fn_list) == list(standard._metric_fn_list)
    assert local.aggregation() == standard.aggregation()
    assert local.higher_is_better() == standard.higher_is_better()
    assert [f.name for f in local._filters] == [f.name for f in standard._filters]
    docs, std_docs = list(local.eval_docs), list(standard.eval_docs)
    assert docs == std_docs
    for doc in docs[:n_docs]:
        assert local.doc_to_text(doc) == standard.doc_to_text(doc)
        assert local.doc_to_target(doc) == standard.doc_to_target(doc)
        if standard.config.doc_to_choice is not None:
            assert local.doc_to_choice(doc) == standard.doc_to_choice(doc)
    assert list(local.fewshot_docs() or []) == list(standard.fewshot_docs() or [])
    assert requests(local) == requests(standard)


def read_jsonl(relative):
    return [json.loads(line) for line in (DATA / relative).read_text(encoding="utf-8").split("\n") if line.strip()]


# --------------------------------------------------------------------------- one task at a time


def test_gsm8k(tm):
    local = build_local(tm, "local_gsm8k")
    standard = build_standard("gsm8k/gsm8k.yaml", local)
    assert_same_task(local, standard)
    assert list(local.eval_docs) == read_jsonl("gsm8k/test.jsonl")
    assert local.config.fewshot_split == "train" and local.config.num_fewshot == 5
    assert [f.name for f in local._filters] == ["strict-match", "flexible-extract"]
    assert len(local.fewshot_docs()) == 7473
    # the 5-shot prompt is built from train, deterministically for a seed
    local.set_fewshot_seed(0)
    standard.set_fewshot_seed(0)
    doc = local.eval_docs[0]
    assert local.fewshot_context(doc, 5) == standard.fewshot_context(doc, 5)


@pytest.mark.parametrize("name", ["arc_easy", "arc_challenge"])
def test_arc(tm, name):
    local = build_local(tm, f"local_{name}")
    standard = build_standard(f"arc/{name}.yaml", local)
    assert_same_task(local, standard)
    assert list(local.eval_docs) == read_jsonl(f"{name}/test.jsonl")
    assert standard.config.dataset_name == {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}[name]
    assert list(local._metric_fn_list) == ["acc", "acc_norm"]


def test_boolq(tm):
    local = build_local(tm, "local_boolq")
    standard = build_standard("super_glue/boolq/default.yaml", local)
    assert_same_task(local, standard)
    assert list(local.eval_docs) == read_jsonl("boolq/validation.jsonl")
    doc = local.eval_docs[0]
    assert local.doc_to_text(doc) == f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"


def test_lambada_openai(tm):
    local = build_local(tm, "local_lambada_openai")
    standard = build_standard("lambada/lambada_openai.yaml", local)
    assert_same_task(local, standard)
    docs = list(local.eval_docs)
    assert docs == read_jsonl("lambada_openai/test.jsonl") and len(docs) == 5153
    context, target = local.doc_to_text(docs[0]), local.doc_to_target(docs[0])
    assert context + target == docs[0]["text"] and target == " signs"  # the last word, with its space
    assert list(local._metric_fn_list) == ["perplexity", "acc"]


def test_wikitext(tm):
    local = build_local(tm, "local_wikitext")
    standard = build_standard("wikitext/wikitext.yaml", local)
    assert_same_task(local, standard, n_docs=62)
    docs = list(local.eval_docs)
    assert len(docs) == 62  # lm-eval's wikitext test split has 62 documents
    assert docs[0]["page"].startswith(" = Robert Boulter = \n \n Robert Boulter is an English film")
    for doc in docs[:5]:
        assert local.process_results(doc, [-100.0]) == standard.process_results(doc, [-100.0])
    # every non-empty line of the shared file is in exactly one page, in order
    rows = [r for r in (DATA / "wikitext2_raw/wiki.test.raw").read_text(encoding="utf-8").split("\n") if r.strip()]
    assert [line for d in docs for line in d["page"].split("\n") if line.strip()] == rows


def test_wikitext_pages_match_the_document_level_builder(tmp_path, monkeypatch):
    """An original-format raw file (blank " " lines kept) vs the shared format (blank lines
    dropped): loading the shared format gives the builder's pages of the original."""
    original = (
        " \n = First = \n \n Intro line . \n Second paragraph . \n \n = = Part = = \n \n \n"
        " = = = Sub = = = \n \n Text @-@ here . \n \n = Second article = \n \n Body . \n"
    )
    folder = tmp_path / "wikitext2_raw"
    folder.mkdir()
    (folder / "wiki.test.raw").write_text("".join(line + "\n" for line in original.split("\n")[:-1] if line.strip()))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    config = T.task_manager().load(["local_wikitext"])["tasks"]["local_wikitext"].config
    pages = [d["page"] for d in config.custom_dataset(**config.dataset_kwargs)["test"]]
    # the builder (EleutherAI/wikitext_document_level) on the original text
    expected, current = [], []
    for line in original.split("\n"):
        flat = line.replace("= = =", "===").replace("= =", "==").strip()
        if flat.startswith("= ") and flat.strip().endswith(" ="):
            if "\n".join(current).strip():
                expected.append("\n".join(current))
            current = []
        current.append(line)
    expected.append("\n".join(current))
    assert pages == expected


def test_squadv2(tm):
    from lm_eval.tasks.squadv2.task import SQuAD2

    local = build_local(tm, "local_squadv2")
    assert isinstance(local, SQuAD2)
    docs = list(local.validation_docs())
    assert docs == read_jsonl("squad_v2/validation.jsonl")
    assert local.config.task == "local_squadv2"
    assert not local.has_test_docs() and local.has_validation_docs()
    assert list(local.eval_docs) == docs
    # everything but the data source, the aggregation functions and the generation kwargs is SQuAD2's own code
    for method in ("doc_to_text", "doc_to_target", "process_results", "higher_is_better"):
        assert getattr(type(local), method) is getattr(SQuAD2, method), method
    assert set(local.aggregation()) == set(SQuAD2.aggregation(local))
    doc = docs[0]
    # its requests are SQuAD2's, until gen_kwargs (simple_evaluate's set_config) update the answer's kwargs
    ctx = local.doc_to_text(doc)
    ours, theirs = local.construct_requests(doc, ctx, metadata=("local_squadv2", 0, 1)), \
        SQuAD2.construct_requests(local, doc, ctx, metadata=("local_squadv2", 0, 1))
    assert [(r.request_type, r.arguments) for r in ours] == [(r.request_type, r.arguments) for r in theirs]
    local.set_config(key="generation_kwargs", value={"max_gen_toks": 16}, update=True)
    generation, loglikelihood = local.construct_requests(doc, ctx, metadata=("local_squadv2", 0, 1))
    assert generation.arguments == (ctx, {"until": ["\n"], "max_gen_toks": 16})
    assert loglikelihood.arguments == theirs[1].arguments
    assert local.doc_to_text(doc).startswith(f"Title: {doc['title']}\n\nBackground: ")
    assert local.doc_to_target(doc) == " " + doc["answers"]["text"][0]
    # aggregate per-document results through the task: right answer vs abstention
    unanswerable = next(d for d in docs if not d["answers"]["text"])
    results = [
        local.process_results(doc, [doc["answers"]["text"][0], (-5.0, False)]),
        local.process_results(unanswerable, ["", (-0.1, True)]),
    ]
    scores = {key: agg([r[key] for r in results]) for key, agg in local.aggregation().items()}
    assert scores["exact"] == 100.0 and scores["HasAns_f1"] == 100.0 and scores["NoAns_exact"] == 100.0
    assert scores["best_exact"] == 100.0


# --------------------------------------------------------------------------- mmlu


def _standard_mmlu():
    import yaml

    folder = LM_EVAL_TASKS / "mmlu" / "default"
    subjects = {}
    for path in sorted(folder.glob("mmlu_*.yaml")):
        config = yaml.safe_load(path.read_text())
        subjects[config["task"]] = config
    groups = {}
    for path in sorted(folder.glob("_mmlu*.yaml")):
        config = yaml.safe_load(path.read_text())
        groups[config["group"]] = config
    return subjects, groups


def test_mmlu_group_structure(tm):
    subjects, groups = _standard_mmlu()
    assert len(subjects) == 57
    loaded = tm.load(["local_mmlu"])
    assert sorted(loaded["tasks"]) == sorted("local_" + s for s in subjects)
    # same tree: mmlu -> 4 category groups -> subjects by tag
    assert loaded["group_map"]["local_mmlu"] == ["local_" + t for t in groups["mmlu"]["task"]]
    for group, config in groups.items():
        local_group = loaded["groups"]["local_" + group]
        if group != "mmlu":
            tag = config["task"][0]
            members = sorted("local_" + s for s, c in subjects.items() if c["tag"] == tag)
            assert sorted(loaded["group_map"]["local_" + group]) == members
            assert local_group.alias == config["group_alias"]


def test_mmlu_group_configs_match(tm):
    from lm_eval.api.group import Group

    _, groups = _standard_mmlu()
    loaded = tm.load(["local_mmlu"])["groups"]
    for group, config in groups.items():
        standard = Group.from_config(config)
        local = loaded["local_" + group]
        assert local.aggregate_metric_list == standard.aggregate_metric_list
        assert local.aggregate_metric_list[0].weight_by_size is True
        assert local.alias == standard.alias or (standard.alias is None and local.alias == local.name)
        assert local.metadata["version"] == standard.metadata["version"]


def test_mmlu_all_subjects_match(tm):
    subjects, _ = _standard_mmlu()
    loaded = tm.load(["local_mmlu"])["tasks"]
    for name in subjects:
        local = loaded["local_" + name]
        standard = build_standard(f"mmlu/default/{name}.yaml", local)
        assert local.config.task_alias == standard.config.task_alias
        assert_same_task(local, standard, n_docs=3)
        subject = subjects[name]["dataset_name"]
        assert len(local.fewshot_docs()) == 5
        assert list(local.eval_docs) == read_jsonl(f"mmlu/{subject}/test.jsonl")
        doc = local.eval_docs[0]
        assert local.fewshot_context(doc, 5) == standard.fewshot_context(doc, 5)  # first_n: dev in order


# --------------------------------------------------------------------------- errors


def test_missing_data_dir_raises_one_line(tm, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(LLMTruncError) as err:
        tm.load(["local_boolq"])
    assert "\n" not in str(err.value) and "data directory not found" in str(err.value)


def test_missing_data_file_raises_one_line(tm, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    for name in ("local_gsm8k", "local_mmlu_anatomy", "local_wikitext", "local_squadv2"):
        with pytest.raises(LLMTruncError) as err:
            tm.load([name])
        assert "\n" not in str(err.value) and "missing data file" in str(err.value)


# --------------------------------------------------------------------------- name mapping


STANDARD = ["gsm8k", "mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other",
            "mmlu_abstract_algebra", "squadv2", "arc_easy", "arc_challenge", "boolq", "wikitext", "lambada_openai"]


def test_list_local_tasks():
    local = T.list_local_tasks()
    for name in STANDARD:
        assert "local_" + name in local
    assert sum(n.startswith("local_mmlu_") for n in local) == 57 + 4


def test_resolve_maps_standard_names_to_local(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    refs = T.resolve_tasks(STANDARD + ["hellaswag", "local_boolq"], data_dir=DATA)
    assert [r.name for r in refs] == STANDARD + ["hellaswag", "local_boolq"]
    assert [r.lm_eval_name for r in refs] == ["local_" + n for n in STANDARD] + ["hellaswag", "local_boolq"]
    assert all(r.is_local for r in refs if r.name != "hellaswag")
    assert ENV_VAR not in os.environ  # exported once, by the run (llmtrunc.llm.run.use_data_dir: tests/llm/test_run.py)
    with pytest.raises(Exception):
        refs[0].name = "x"  # frozen


def test_resolve_use_hub_or_no_data_keeps_standard_names(tmp_path, monkeypatch):
    refs = T.resolve_tasks(["gsm8k", "mmlu"], use_hub=True)
    assert [r.lm_eval_name for r in refs] == ["gsm8k", "mmlu"]
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    assert [r.lm_eval_name for r in T.resolve_tasks(["boolq"])] == ["boolq"]


def test_resolve_errors(tmp_path):
    with pytest.raises(LLMTruncError) as err:
        T.resolve_tasks(["gsm8k", "no_such_task"])
    message = str(err.value)
    assert message.startswith("unknown task 'no_such_task' (see `lm-eval ls tasks`") and "\n" not in message
    with pytest.raises(LLMTruncError, match="data directory not found"):
        T.resolve_tasks(["gsm8k"], data_dir=tmp_path / "absent")
    with pytest.raises(LLMTruncError):
        T.resolve_tasks([])


def test_check_num_fewshot():
    refs = T.resolve_tasks(["gsm8k", "arc_easy"], data_dir=DATA)
    T.check_num_fewshot(refs, 0)
    T.check_num_fewshot(refs[:1], 5)
    with pytest.raises(LLMTruncError, match="arc_easy: --num-fewshot 5 needs the train split"):
        T.check_num_fewshot(refs, 5)


def test_tasks_dir_default_and_override(tmp_path):
    assert T.tasks_dir() == Path(__file__).resolve().parents[2] / "tasks"
    code = "import llmtrunc.llm.tasks as t; print(t.tasks_dir())"
    env = dict(os.environ, LLMTRUNC_TASKS_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path.resolve())


def test_task_manager_is_cached():
    assert T.task_manager() is T.task_manager()


def copy_tasks(tmp_path, monkeypatch):
    """tasks/ and a data directory holding the files of local_arc_easy and local_mmlu_anatomy, all copies."""
    import shutil

    tasks = tmp_path / "tasks"
    shutil.copytree(T.tasks_dir(), tasks)
    data = tmp_path / "data"
    for relative in ("arc_easy/test.jsonl", "mmlu/anatomy/test.jsonl", "mmlu/anatomy/dev.jsonl"):
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / relative, data / relative)
    monkeypatch.setenv(T.TASKS_ENV_VAR, str(tasks))
    monkeypatch.setenv(ENV_VAR, str(data))
    T.task_manager.cache_clear()
    T._scan_local.cache_clear()
    return tasks, data


def test_fingerprint_follows_task_files_and_data(tmp_path, monkeypatch):
    """A cell key holds the task's fingerprint: an edited prompt, data file, group member or module code changes it."""
    tasks, data = copy_tasks(tmp_path, monkeypatch)
    try:
        arc, group = T.TaskRef("arc_easy", "local_arc_easy"), T.TaskRef("mmlu_stem", "local_mmlu_stem")
        before = {ref: T.fingerprint(ref) for ref in (arc, group)}
        assert T.fingerprint(arc) == before[arc]  # stable
        with (data / "arc_easy/test.jsonl").open("a") as handle:
            handle.write("\n")  # same rows, other bytes: still a different file
        assert T.fingerprint(arc) != before[arc]
        assert T.fingerprint(group) == before[group]  # other tasks' data untouched
        (data / "mmlu/anatomy/dev.jsonl").write_text((data / "mmlu/anatomy/dev.jsonl").read_text().replace("A", "B", 1))
        assert T.fingerprint(group) != before[group]  # a member (through the tag) read an edited file
        prompt = tasks / "local_arc_easy.yaml"
        edited = T.fingerprint(arc)
        prompt.write_text(prompt.read_text().replace('"Question: {{question}}\\nAnswer:"', '"Q: {{question}}\\nA:"', 1))
        T.task_manager.cache_clear()
        assert T.fingerprint(arc) != edited
        squad, module = T.TaskRef("squadv2", "local_squadv2"), tasks / "_local_data.py"
        edited = T.fingerprint(squad)
        module.write_text(module.read_text().replace('"""Offline data loaders', '"""The offline data loaders', 1))
        assert T.fingerprint(squad) == edited  # the !function module's words: same code, same keys
        module.write_text(module.read_text().replace("\n\n\nclass LocalSQuAD2", "\nX = 1\n\n\nclass LocalSQuAD2", 1))
        assert T.fingerprint(squad) != edited  # its code (read at each fingerprint: no index rebuilt)
    finally:
        T.task_manager.cache_clear()
        T._scan_local.cache_clear()


def test_task_yaml_files_and_include_paths_resolve(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "my_arc.yaml").write_text("include: " + str(T.tasks_dir() / "local_arc_easy.yaml") + "\ntask: my_arc\n")
    refs = T.resolve_tasks(["my_arc"], DATA, include_paths=(str(own),))
    assert refs == [T.TaskRef("my_arc", "my_arc")]
    by_file = T.resolve_tasks([str(own / "my_arc.yaml")], DATA)
    assert by_file[0].lm_eval_name == str((own / "my_arc.yaml").resolve())
    assert T.fingerprint(by_file[0]) == T.fingerprint(refs[0], (str(own),))
    with pytest.raises(LLMTruncError, match="unknown task 'my_arc'"):
        T.resolve_tasks(["my_arc"], DATA)
    with pytest.raises(LLMTruncError, match="not a directory"):
        T.resolve_tasks(["arc_easy"], DATA, include_paths=(str(tmp_path / "absent"),))


def test_unreachable_hub_dataset_is_one_line_naming_the_data_dir(tm, tmp_path, monkeypatch):
    """A clone with no data directory falls back to lm-eval's Hub task; offline that must end in one line
    saying how to select the offline copy, not datasets' ConnectionError traceback."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent"))
    ref = T.resolve_tasks(["arc_easy"])[0]
    assert ref.lm_eval_name == "arc_easy"
    with pytest.raises(LLMTruncError) as err:
        T.load_tasks(ref)
    message = str(err.value)
    assert "\n" not in message and message.startswith("arc_easy: cannot load its dataset: ")
    assert message.endswith(f"pass --data-dir or set {ENV_VAR} (no ../shared/data found)")
    monkeypatch.setenv(ENV_VAR, str(DATA))  # data present, Hub chosen: the hint is to drop --hub-tasks
    with pytest.raises(LLMTruncError, match="drop --hub-tasks$"):
        T.load_tasks(T.resolve_tasks(["arc_easy"], use_hub=True)[0])
