"""`llmtrunc export`: the exported checkpoint reproduces the hook path exactly, and only the LM head changes."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from llmtrunc.llm import export, hooks
from llmtrunc.cli import main
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import parse_drop
from tests.helpers.models import tiny_model
from tests.helpers.checkpoint import save_tiny

INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])


def load_export(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


def saved_tensors(folder):
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def hook_logits(model, spec, ids):
    with torch.no_grad(), hooks.truncated(model, spec.mask(hooks.hidden_size(model)), "post-norm"):
        return model(ids).logits


def check_only_head_changed(original, folder, indices):
    """Every saved tensor equals the original's, bit for bit, except lm_head.weight (columns zeroed)."""
    state = original.state_dict()
    saved = saved_tensors(folder)
    assert "lm_head.weight" in saved
    for name, tensor in saved.items():
        if name == "lm_head.weight":
            continue
        assert torch.equal(tensor, state[name]), name
    head = saved["lm_head.weight"]
    keep = [i for i in range(head.shape[1]) if i not in set(indices)]
    assert torch.all(head[:, list(indices)] == 0)
    assert torch.equal(head[:, keep], original.lm_head.weight.detach()[:, keep])


# --- the real tied SmolLM2 (GGUF), loaded once -------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    model, tokenizer = export.load_source(smollm2_dir)
    return model, tokenizer


@pytest.fixture(scope="module")
def smollm2_export(smollm2, smollm2_dir, tmp_path_factory):
    model, tokenizer = smollm2
    embed_before = model.model.embed_tokens.weight.detach().clone()
    spec = parse_drop("random:30%@3")
    out = tmp_path_factory.mktemp("exports") / "smollm2-random30"
    source = export.source_metadata(smollm2_dir, "main", "auto")
    export.export_model(model, tokenizer, spec, out, source=source)
    return spec, out, embed_before


def test_tied_smollm2_export_gives_the_hook_logits(smollm2, smollm2_export):
    model, tokenizer = smollm2
    spec, out, _ = smollm2_export
    ids = tokenizer("The Normans gave their name to Normandy, a region in France.", return_tensors="pt").input_ids
    exported = load_export(out)
    with torch.no_grad():
        got = exported(ids).logits
    expected = hook_logits(model, spec, ids)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(got, model(ids).logits, atol=1e-3)  # the drop did change the model


def test_tied_smollm2_export_unties_and_keeps_embeddings(smollm2, smollm2_export):
    model, tokenizer = smollm2
    spec, out, embed_before = smollm2_export
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the source model is left tied ...
    assert torch.equal(model.model.embed_tokens.weight, embed_before)  # ... and untouched
    assert model.config.tie_word_embeddings and not hasattr(model.config, export.META_KEY)
    exported = load_export(out)
    assert exported.lm_head.weight is not exported.model.embed_tokens.weight
    assert exported.config.tie_word_embeddings is False
    assert torch.equal(exported.model.embed_tokens.weight, embed_before)
    check_only_head_changed(model, out, spec.mask(576).dropped)
    reloaded_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "Question: What is 2 + 3?\nAnswer:"
    assert reloaded_tok(text).input_ids == tokenizer(text).input_ids


def test_smollm2_export_records_the_drop(smollm2_export, smollm2_dir):
    spec, out, _ = smollm2_export
    config = json.loads((out / "config.json").read_text())
    meta = config[export.META_KEY]
    assert meta == json.loads((out / export.META_FILE).read_text()) == export.read_drop(out)
    assert meta["spec"] == "random:30%@3" and meta["seed"] == 3 and meta["at"] == "post-norm"
    assert meta["indices"] == list(spec.mask(576).dropped) and meta["n_dropped"] == 172 and meta["hidden_size"] == 576
    assert meta["source"]["model"] == "smollm2-135m" and meta["source"]["gguf_file"] == smollm2_dir.gguf_file
    assert config["tie_word_embeddings"] is False
    assert "quantization_config" not in config  # a dense checkpoint, not a GGUF one


# --- tiny random models ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("llama", True)])
def test_tiny_export_matches_hooks(arch, tied, tmp_path):
    model = tiny_model(arch, tied)
    embed = model.get_input_embeddings().weight.detach().clone()
    spec = parse_drop("first:25%")
    out = export.export_model(model, None, spec, tmp_path / "out")
    exported = load_export(out)
    with torch.no_grad():
        got = exported(INPUT).logits
    torch.testing.assert_close(got, hook_logits(model, spec, INPUT), rtol=0, atol=1e-5)
    assert torch.equal(exported.get_input_embeddings().weight, embed)
    assert exported.lm_head.weight is not exported.get_input_embeddings().weight
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == tied
    check_only_head_changed(model, out, spec.mask(24).dropped)
    assert export.read_drop(out)["indices"] == [0, 1, 2, 3, 4, 5]


def test_export_of_none_is_the_model_itself(tmp_path):
    model = tiny_model("qwen2")
    out = export.export_model(model, None, parse_drop("none"), tmp_path / "none")
    with torch.no_grad():
        assert torch.equal(load_export(out)(INPUT).logits, model(INPUT).logits)
    assert export.read_drop(out)["indices"] == []


def test_export_refuses_pre_norm_and_pca(tmp_path):
    model = tiny_model("qwen2")
    with pytest.raises(LLMTruncError, match="pre-norm drops cannot be expressed as weights"):
        export.export_model(model, None, parse_drop("last-half"), tmp_path / "x", at="pre-norm")
    with pytest.raises(LLMTruncError, match="pca"):
        export.export_model(model, None, parse_drop("pca:50%"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --- the CLI -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2")


def test_cli_export_end_to_end(tiny_dir, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["export", "--model", str(tiny_dir), "--drop", "last:50%", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = export.read_drop(out)
    assert meta["spec"] == "last:50%" and meta["indices"] == list(range(12, 24))
    assert meta["source"]["pretrained"] == str(tiny_dir.resolve())
    original = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    with torch.no_grad():
        got = load_export(out)(INPUT).logits
    torch.testing.assert_close(got, hook_logits(original, parse_drop("last:50%"), INPUT), rtol=0, atol=1e-5)
    assert (out / "tokenizer.json").is_file()
    # a second export into the same non-empty directory is refused unless --overwrite
    assert main(["export", "--model", str(tiny_dir), "--drop", "first:10%", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", "--model", str(tiny_dir), "--drop", "first:10%", "--out", str(out), "--overwrite"]) == 0
    assert export.read_drop(out)["spec"] == "first:10%"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".exp.")]  # no staging left behind


@pytest.mark.parametrize("argv,message", [
    (["--drop", "last-half", "--at", "pre-norm"], "pre-norm drops cannot be expressed as weights"),
    (["--drop", "pca:50%"], "encoder-only projection"),
    (["--drop", "first-half,last-half"], "one checkpoint per drop"),
    (["--drop", "middle:50%"], "malformed drop spec"),
    (["--drop", "last-half", "--dtype", "int3"], "unknown --dtype"),
    (["--drop", "last-half", "--model", "no-such-model"], "unknown model"),
])
def test_cli_bad_input_is_one_line(argv, message, tiny_dir, tmp_path, capsys):
    args = ["export", "--out", str(tmp_path / "o")] + argv
    if "--model" not in argv:
        args += ["--model", str(tiny_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_reuse_mode_keeps_a_complete_export_and_loses_races_cleanly(tmp_path, monkeypatch):
    model = tiny_model("qwen2")
    out = export.export_model(model, None, parse_drop("first:25%"), tmp_path / "cache")
    stamp = (out / export.META_FILE).stat().st_mtime_ns
    assert export.export_model(model, None, parse_drop("first:25%"), out, exists="reuse") == out
    assert (out / export.META_FILE).stat().st_mtime_ns == stamp  # nothing rewritten
    # another shard finished the same export while we were writing ours: theirs stays, ours is dropped
    monkeypatch.setattr(export, "_existing", lambda out, exists: False)
    export.export_model(model, None, parse_drop("first:25%"), out, exists="reuse")
    assert (out / export.META_FILE).stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
    with pytest.raises(LLMTruncError, match="appeared while exporting"):
        export.export_model(model, None, parse_drop("first:25%"), out, exists="error")
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
