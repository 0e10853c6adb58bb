"""LLM activation profiles: equal to a hand computation at both positions, cached, invalidated by the text."""

import numpy as np
import pytest
import torch

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.calibration import Calibration, compute_profile
from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.llm.hooks import find_final_norm, find_lm_head
from llmtrunc.spec import parse_drop
from tests.helpers.checkpoint import save_tiny, tiny_tokenizer
from tests.helpers.models import CLASSES, TINY, tiny_model


def write_text(path, seed: int, words: int = 50):
    rng = np.random.default_rng(seed)
    path.write_text(" ".join(f"w{i}" for i in rng.integers(1, TINY["vocab_size"] - 1, words)))
    return path


def by_hand(model, ids: list[int], chunk: int, at: str) -> tuple[np.ndarray, np.ndarray]:
    """Full forward passes over the chunks, the hook position's tensor captured and averaged."""
    seen = []
    target = find_lm_head(model) if at == "post-norm" else find_final_norm(model)
    handle = target.register_forward_pre_hook(lambda m, args: seen.append(args[0][0].double()))
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            model(torch.tensor([ids[start: start + chunk]]))
    handle.remove()
    states = torch.cat(seen).numpy()
    return states.mean(axis=0), np.abs(states).mean(axis=0)


@pytest.mark.parametrize("arch", CLASSES)
@pytest.mark.parametrize("at", ["post-norm", "pre-norm"])
def test_profile_equals_the_hook_positions_average(arch, at, tmp_path):
    """Every class of the architecture matrix (tests/llm/test_architectures.py): the profile, and the drops
    resolved against it, from the hook position's own tensor."""
    model, tokenizer = tiny_model(arch), tiny_tokenizer()
    calibration = Calibration(str(write_text(tmp_path / "text.txt", 0)), tokens=40, chunk=16)  # chunks 16, 16, 8
    profile = compute_profile(model, tokenizer, calibration, at, max_length=64)
    ids = tokenizer(calibration.file().read_text(), add_special_tokens=False)["input_ids"][:40]
    mean, mean_abs = by_hand(model, ids, 16, at)
    assert profile.dim == TINY["hidden_size"]
    np.testing.assert_allclose(profile.mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(profile.mean_abs, mean_abs, rtol=1e-12, atol=1e-15)
    assert profile.calibration == {"source": calibration.path, **calibration.key(), "tokens": 40, "chunk": 16,
                                   "position": at}
    dim = TINY["hidden_size"]
    assert parse_drop("top:25%").mask(dim, profile).dropped == tuple(sorted(np.argsort(-mean_abs, kind="stable")[:6]))
    assert parse_drop("outliers").mask(dim, profile).dropped == tuple(
        i for i in range(dim) if abs(mean[i] - mean.mean()) > 3 * mean.std())


def test_chunks_stop_at_the_context_and_short_texts_use_what_they_have(tmp_path):
    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    calibration = Calibration(str(write_text(tmp_path / "text.txt", 1, words=30)), tokens=8192)
    profile = compute_profile(model, tokenizer, calibration, "post-norm", max_length=20)
    ids = tokenizer(calibration.file().read_text(), add_special_tokens=False)["input_ids"]
    mean, _ = by_hand(model, ids, 20, "post-norm")
    np.testing.assert_allclose(profile.mean, mean, rtol=1e-12, atol=1e-15)
    assert (profile.calibration["tokens"], profile.calibration["chunk"]) == (30, 20)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(LLMTruncError, match="holds no tokens"):
        compute_profile(model, tokenizer, Calibration(str(tmp_path / "empty.txt")), "post-norm", 20)
    with pytest.raises(LLMTruncError, match="tokens must be positive"):
        Calibration(tokens=0)


def forward_counter(lm) -> list:
    """Grows by one on every forward pass through the model's final norm."""
    calls = []
    find_final_norm(lm.model).register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


def test_hf_trunc_caches_profiles_and_recomputes_for_a_new_text(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRUNC_CACHE_DIR", str(tmp_path / "cache"))
    folder = save_tiny(tmp_path / "tiny", "llama")
    text = write_text(tmp_path / "text.txt", 2)
    first = HFTruncLM(pretrained=str(folder), device="cpu", drop="last-half", at="pre-norm",
                      calibration=str(text), calibration_tokens=40)
    calls = forward_counter(first)
    mask = first.set_drop(parse_drop("top:25%"), "post-norm")  # computed once, with the pre-norm hooks set aside
    assert calls and first.drop_hooks.mask == mask
    assert mask.dropped == tuple(sorted(first.profile("post-norm").by_magnitude(largest=True)[:6]))
    assert len(list((tmp_path / "cache" / "profiles").glob("*.json"))) == 1
    calls.clear()
    first.set_drop(parse_drop("bottom:25%"), "post-norm")
    assert not calls  # the position's profile is kept in memory
    untouched = HFTruncLM(pretrained=str(folder), device="cpu", calibration=str(text), calibration_tokens=40)
    reference = compute_profile(untouched.model, untouched.tokenizer, untouched.calibration, "post-norm", 64)
    np.testing.assert_array_equal(first.profile("post-norm").mean, reference.mean)  # hooks never leaked in

    second = HFTruncLM(pretrained=str(folder), device="cpu", calibration=str(text), calibration_tokens=40)
    calls = forward_counter(second)
    assert second.set_drop(parse_drop("top:25%"), "post-norm") == mask
    assert not calls  # read from the cache: no forward pass at all
    np.testing.assert_array_equal(second.profile("post-norm").mean_abs, first.profile("post-norm").mean_abs)
    second.set_drop(parse_drop("outliers"), "pre-norm")
    assert calls  # another position is another profile
    assert second.profile("pre-norm").calibration["position"] == "pre-norm"

    write_text(text, 3)  # the same file, new content: a new profile
    third = HFTruncLM(pretrained=str(folder), device="cpu", calibration=str(text), calibration_tokens=40)
    calls = forward_counter(third)
    third.set_drop(parse_drop("top:25%"), "post-norm")
    assert calls
    assert not np.array_equal(third.profile("post-norm").mean, first.profile("post-norm").mean)
    assert len(list((tmp_path / "cache" / "profiles").glob("*.json"))) == 3


def test_a_model_object_is_profiled_but_never_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMTRUNC_CACHE_DIR", str(tmp_path / "cache"))
    model, text = tiny_model("llama"), write_text(tmp_path / "text.txt", 4)
    lm = HFTruncLM(pretrained=model, tokenizer=tiny_tokenizer(), device="cpu", drop="top:50%", calibration=str(text),
                   calibration_tokens=40)
    reference = compute_profile(model, tiny_tokenizer(), Calibration(str(text), tokens=40), "post-norm", 64)
    assert lm.drop_hooks.mask.dropped == tuple(sorted(reference.by_magnitude(largest=True)[:12]))
    assert not (tmp_path / "cache").exists()  # no name pins an object's weights


def test_export_and_vllm_refuse_profile_specs():
    from llmtrunc.llm.export import check_exportable

    with pytest.raises(LLMTruncError, match="activation profile"):
        check_exportable(parse_drop("random:outliers@0"), "post-norm")


@pytest.mark.slow
def test_eval_outliers_against_random_control_on_smollm2(tmp_path, monkeypatch, capsys):
    """`llmtrunc eval --drop outliers,random:outliers@0` on the real model: resolved indices and calibration recorded."""
    from llmtrunc.cli import main
    from llmtrunc.outliers import outlier_table
    from llmtrunc.spec import Mask
    from llmtrunc.store import ResultsStore

    monkeypatch.setenv("LLMTRUNC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "results"
    argv = ["eval", "--model", "smollm2-135m", "--tasks", "arc_easy", "--limit", "10", "--drop",
            "outliers,random:outliers@0", "--calibration-tokens", "2048", "--batch-size", "4", "--results-dir", str(out)]
    assert main(argv) == 0
    records = ResultsStore(out).records()
    acc = records[records["metric"] == "acc"].set_index("drop")
    removed, control = acc.loc["outliers"], acc.loc["random:outliers@0"]
    calibration = removed["calibration"]
    assert calibration["source"] == "wikitext2_raw/wiki.test.raw" and calibration["position"] == "post-norm"
    assert (calibration["tokens"], calibration["chunk"]) == (2048, 1024) and len(calibration["sha256"]) == 64
    assert removed["dropped_indices"] == calibration["outliers"] and calibration["n_outliers"] == len(calibration["outliers"])
    assert control["dropped_indices"] == list(Mask.random(576, calibration["n_outliers"], 0).dropped)
    assert control["calibration"] == calibration and not isinstance(acc.loc["none"].get("calibration"), dict)
    table = outlier_table(records)
    assert len(table) == 1 and table["n_outliers"].iloc[0] == calibration["n_outliers"]
    assert table["outliers_score"].iloc[0] == removed["value"] and table["random_score"].iloc[0] == control["value"]
    assert main(["report", "--results-dir", str(out), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert "### The outlier experiment" in page and ",".join(map(str, calibration["outliers"])) in page
    profiles = list((tmp_path / "cache" / "profiles").glob("*.json"))
    assert len(profiles) == 1
    # a second command reuses every cell and loads nothing
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().err.count("reusing") == 3
