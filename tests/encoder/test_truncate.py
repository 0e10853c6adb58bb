"""Truncation of embedding matrices (Mask.remove, PCA to the same size) and the encoder grid."""

import numpy as np
import pytest

from llmtrunc.encoder import truncate as trunc
from llmtrunc.encoder.evaluate import score_specs
from llmtrunc.encoder.tasks.base import Task
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import expand_grid, parse_drop, parse_int_list, parse_k_list


def test_last_50_keeps_exactly_the_first_half():
    x = np.arange(2 * 384, dtype=np.float32).reshape(2, 384)
    np.testing.assert_array_equal(trunc.apply(parse_drop("last:50%"), x), x[:, :192])
    np.testing.assert_array_equal(trunc.apply(parse_drop("first:50%"), x), x[:, 192:])
    np.testing.assert_array_equal(trunc.apply(parse_drop("none"), x), x)


def test_last_k_keeps_d_minus_floor_kd_for_odd_sizes():
    mask = parse_drop("last:30%").mask(7)  # floor(2.1) = 2 dropped
    assert mask.dropped == (5, 6) and list(mask.kept) == [0, 1, 2, 3, 4]


def test_random_seeds_reproduce_and_differ():
    a, b, c = (parse_drop(s).mask(384) for s in ("random:50%@3", "random:50%@3", "random:50%@4"))
    assert a == b and a != c
    assert a.n_dropped == 192 and len(set(a.dropped)) == 192
    specs = expand_grid(["random"], parse_k_list("50"), [3, 4])
    assert [s.mask(384) for s in specs[1:]] == [a, c]


def test_grid_specs_and_k_lists():
    assert parse_int_list("0,10,...,90", "--k") == list(range(0, 100, 10))
    assert parse_int_list("0-9", "--seeds") == list(range(10))
    assert parse_k_list("0,10,...,90") == [f"{k}%" for k in range(0, 100, 10)]
    assert parse_k_list("12.5%,25%") == ["12.5%", "25%"]
    specs = expand_grid(["first,last,random,pca"], parse_k_list("0,10,...,90"), list(range(10)))
    assert len(specs) == 1 + 10 + 10 + 100 + 10  # the baseline first, always
    assert specs[0].name == "none" and specs[1].name == "first:0%" and specs[-1].name == "pca:90%"
    with pytest.raises(LLMTruncError):
        parse_k_list("0,10,...,95")
    with pytest.raises(LLMTruncError, match="outside 0-100%"):
        parse_k_list("150")
    with pytest.raises(LLMTruncError):
        expand_grid(["middle:50%"], ["0%"], [0])


def test_pca_size_and_projection():
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(200, 16)).astype(np.float32)
    pca = trunc.PCAProjector(fit)
    spec = parse_drop("pca:25%")
    out = trunc.apply(spec, rng.normal(size=(5, 16)).astype(np.float32), pca)
    assert out.shape == (5, 12)
    np.testing.assert_allclose(pca.mean, fit.mean(axis=0), rtol=1e-5, atol=1e-6)
    # projected fit data has decreasing variance along components
    variances = trunc.apply(spec, fit, pca).var(axis=0)
    assert np.all(np.diff(variances) <= 1e-4)
    # fewer fit rows than components: zero padding keeps the requested size
    small = trunc.PCAProjector(fit[:4])
    assert small.transform(fit[:3], 12).shape == (3, 12)


class _Spy(trunc.PCAProjector):
    fitted: list = []

    def __init__(self, fit_matrix):
        _Spy.fitted.append(fit_matrix)
        super().__init__(fit_matrix)


class _ToyTask(Task):
    kind = "toy"
    main_metric = "m"

    def __init__(self, fit_set, fit_only):
        super().__init__("toy")
        self.fit_set = fit_set
        self.fit_only_sets = fit_only
        self.seen = []

    def sets(self):
        return {}

    def score(self, embeddings, similarity, full):
        self.seen.append({k: v.shape for k, v in embeddings.items()})
        return {"m": 0.0}


@pytest.mark.parametrize("fit_set,fit_only", [("corpus", ()), ("train", ()), ("fit", ("fit",))])
def test_pca_is_fitted_only_on_the_allowed_side(monkeypatch, fit_set, fit_only):
    rng = np.random.default_rng(1)
    names = {"corpus": ["queries", "corpus"], "train": ["train", "test"], "fit": ["sentences", "fit"]}[fit_set]
    embeddings = {n: rng.normal(size=(30 + 7 * i, 20)).astype(np.float32) for i, n in enumerate(names)}
    monkeypatch.setattr(trunc, "PCAProjector", _Spy)
    _Spy.fitted = []
    task = _ToyTask(fit_set, fit_only)
    specs = [parse_drop(s) for s in ("pca:50%", "pca:10%", "last:50%")]
    list(score_specs(task, embeddings, "cosine", specs))
    assert len(_Spy.fitted) == 1 and _Spy.fitted[0] is embeddings[fit_set]
    assert task.seen[0] == {n: (embeddings[n].shape[0], 10) for n in names if n not in fit_only}
    assert task.seen[1] == {n: (embeddings[n].shape[0], 18) for n in names if n not in fit_only}
