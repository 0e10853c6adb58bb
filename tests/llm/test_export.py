"""`llmtrunc export`: the exported checkpoint reproduces the hook path exactly and changes only what its method
edits (norm: the final norm's scale entries, tie kept; head: the LM-head columns, untied); a wrong export is
refused before it is published."""

import json
from dataclasses import replace

import pytest
import torch
import transformers
from safetensors.torch import load_file

from llmtrunc.llm import architectures, export, hooks
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
def smollm2_exports(smollm2, smollm2_dir, tmp_path_factory):
    """random:30%@3 exported with each method from the one loaded source."""
    model, tokenizer = smollm2
    embed_before = model.model.embed_tokens.weight.detach().clone()
    spec = parse_drop("random:30%@3")
    root = tmp_path_factory.mktemp("exports")
    source = export.source_metadata(smollm2_dir, "main", "auto")
    outs = {via: export.export_model(model, tokenizer, spec, root / via, source=source, via=via) for via in ("norm", "head")}
    return spec, outs, embed_before


@pytest.mark.parametrize("via", ["norm", "head"])
def test_tied_smollm2_export_gives_the_hook_logits(smollm2, smollm2_exports, via):
    model, tokenizer = smollm2
    spec, outs, _ = smollm2_exports
    ids = tokenizer("The Normans gave their name to Normandy, a region in France.", return_tensors="pt").input_ids
    with torch.no_grad():
        got = load_export(outs[via])(ids).logits
    expected = hook_logits(model, spec, ids)
    assert torch.equal(got, expected)  # both edits give the hook's hidden state bit for bit
    with torch.no_grad():
        assert not torch.allclose(got, model(ids).logits, atol=1e-3)  # the drop did change the model


def test_tied_smollm2_head_export_unties_and_keeps_embeddings(smollm2, smollm2_exports):
    model, tokenizer = smollm2
    spec, outs, embed_before = smollm2_exports
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the source model is left tied ...
    assert torch.equal(model.model.embed_tokens.weight, embed_before)  # ... and untouched
    assert model.config.tie_word_embeddings and not hasattr(model.config, export.META_KEY)
    exported = load_export(outs["head"])
    assert exported.lm_head.weight is not exported.model.embed_tokens.weight
    assert exported.config.tie_word_embeddings is False
    assert torch.equal(exported.model.embed_tokens.weight, embed_before)
    check_only_head_changed(model, outs["head"], spec.mask(576).dropped)
    reloaded_tok = transformers.AutoTokenizer.from_pretrained(outs["head"])
    text = "Question: What is 2 + 3?\nAnswer:"
    assert reloaded_tok(text).input_ids == tokenizer(text).input_ids


def test_tied_smollm2_norm_export_keeps_the_tie_and_changes_only_the_norm(smollm2, smollm2_exports):
    model, _ = smollm2
    spec, outs, _ = smollm2_exports
    dropped = list(spec.mask(576).dropped)
    kept = [i for i in range(576) if i not in set(dropped)]
    saved = saved_tensors(outs["norm"])
    assert "lm_head.weight" not in saved  # tied: no vocabulary-sized copy
    state = model.state_dict()
    for name, tensor in saved.items():
        if name != "model.norm.weight":
            assert torch.equal(tensor, state[name]), name
    norm = saved["model.norm.weight"]
    assert torch.all(norm[dropped] == 0) and torch.equal(norm[kept], model.model.norm.weight.detach()[kept])
    assert torch.any(model.model.norm.weight[dropped] != 0)  # the source is left as it was
    exported = load_export(outs["norm"])
    assert exported.config.tie_word_embeddings and exported.lm_head.weight is exported.model.embed_tokens.weight
    size = {via: sum(f.stat().st_size for f in out.glob("*.safetensors")) for via, out in outs.items()}
    assert abs(size["head"] - size["norm"] - 49152 * 576 * 4) < 1024  # the untied head's float32 copy (+ header)


def test_smollm2_export_records_the_drop_and_its_verification(smollm2_exports, smollm2_dir):
    spec, outs, _ = smollm2_exports
    for via, out in outs.items():
        config = json.loads((out / "config.json").read_text())
        meta = config[export.META_KEY]
        assert meta == json.loads((out / export.META_FILE).read_text()) == export.read_drop(out)
        assert meta["spec"] == "random:30%@3" and meta["seed"] == 3 and meta["at"] == "post-norm"
        assert meta["indices"] == list(spec.mask(576).dropped) and meta["n_dropped"] == 172 and meta["hidden_size"] == 576
        assert meta["source"]["model"] == "smollm2-135m" and meta["source"]["gguf_file"] == smollm2_dir.gguf_file
        assert meta["method"] == via and meta["edit"].startswith("model.norm.weight[i] = 0" if via == "norm" else
                                                                 "lm_head.weight[:, i] = 0")
        check = meta["verification"]
        assert check["max_abs_logit_diff"] == 0.0 and len(check["input_ids"]) == 16
        assert len(check["token_logprobs"]) == len(check["untruncated_token_logprobs"]) == 15
        assert check["token_logprobs"] != check["untruncated_token_logprobs"]
        assert config["tie_word_embeddings"] is (via == "norm")
        assert "quantization_config" not in config  # a dense checkpoint, not a GGUF one


# --- tiny random models ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("llama", True)])
def test_tiny_head_export_matches_hooks(arch, tied, tmp_path):
    model = tiny_model(arch, tied)
    embed = model.get_input_embeddings().weight.detach().clone()
    spec = parse_drop("first:25%")
    out = export.export_model(model, None, spec, tmp_path / "out", via="head")
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


@pytest.fixture
def gemma_declared(monkeypatch):
    """Gemma's hooks/ entry, replaceable for one test (as editing hooks/gemma.yaml would)."""
    def declare(**facts):
        arch = architectures.registry().get("GemmaForCausalLM")
        monkeypatch.setitem(architectures.registry()._items, "GemmaForCausalLM", replace(arch, **facts))
    return declare


def test_an_export_that_misses_the_hook_path_is_refused_and_not_written(gemma_declared, tmp_path):
    gemma_declared(norm_scale="w")  # wrong: Gemma scales by 1 + w, so w_i = 0 keeps dimension i
    model = tiny_model("gemma", tied=True)
    with pytest.raises(LLMTruncError, match=r"does not reproduce the hook path: max \|logit difference\| [0-9.]+") as err:
        export.export_model(model, None, parse_drop("last-half"), tmp_path / "out")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the export nor its staging folder


def test_a_method_the_architecture_does_not_list_is_refused(gemma_declared, tmp_path):
    gemma_declared(export=("norm",))  # e.g. an engine found to read a tied head from the embeddings
    model = tiny_model("gemma", tied=True)
    with pytest.raises(LLMTruncError, match="exporting via head is not exact for gemma models"):
        export.export_model(model, None, parse_drop("last-half"), tmp_path / "out", via="head")
    with pytest.raises(LLMTruncError, match="unknown export method 'sideways'"):
        export.export_model(model, None, parse_drop("last-half"), tmp_path / "out", via="sideways")
    assert export.read_drop(export.export_model(model, None, parse_drop("last-half"), tmp_path / "out"))["method"] == "norm"


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
    assert "via norm); verified against the hook path: max |logit difference| 0\n" in capsys.readouterr().out
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


def test_cli_unknown_method_is_one_line(tiny_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--model", str(tiny_dir), "--drop", "last-half", "--via", "sideways", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'sideways'" in err and err.count("\n") == 1


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
