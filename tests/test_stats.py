"""llmtrunc.stats against hand-computed cases and scipy references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sp

from llmtrunc.stats import (BootstrapResult, PairedTestResult, indistinguishable, mcnemar, paired_bootstrap,
                            paired_permutation, paired_test, seed_summary, sign_test)


def _outcomes(both: int, b: int, c: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 outcomes with the given cells of the 2x2 table, in a shuffled item order."""
    base = np.array([1] * both + [1] * b + [0] * c + [0] * neither)
    cond = np.array([1] * both + [0] * b + [1] * c + [0] * neither)
    order = np.random.default_rng(1).permutation(len(base))
    return base[order], cond[order]


# --- McNemar ---------------------------------------------------------------------------------------------------

def test_mcnemar_exact_p_value_by_hand():
    r = mcnemar(*_outcomes(both=10, b=1, c=6, neither=3))
    assert (r.b, r.c, r.n, r.method) == (1, 6, 20, "mcnemar")
    assert r.p_value == pytest.approx(2 * (1 + 7) / 128)  # 2 * P(X <= 1), X ~ Bin(7, 1/2) = 0.125
    assert r.statistic == pytest.approx((abs(1 - 6) - 1) ** 2 / 7)  # 16 / 7


def test_mcnemar_is_symmetric_in_b_and_c():
    assert mcnemar(*_outcomes(4, 6, 1, 2)).p_value == pytest.approx(0.125)


def test_mcnemar_balanced_and_no_discordant_pairs_give_p_one():
    balanced = mcnemar(*_outcomes(5, 3, 3, 5))
    assert balanced.p_value == 1.0 and balanced.statistic == pytest.approx(1 / 6)
    none = mcnemar(*_outcomes(7, 0, 0, 2))
    assert (none.b, none.c, none.p_value) == (0, 0, 1.0) and math.isnan(none.statistic)


def test_mcnemar_accepts_bools_and_rejects_non_binary():
    base, cond = _outcomes(3, 1, 6, 0)
    assert mcnemar(base.astype(bool), cond.astype(bool)) == mcnemar(base, cond)
    with pytest.raises(ValueError, match="binary"):
        mcnemar(np.array([0, 1, 0.5]), np.array([0, 1, 1]))


# --- sign and permutation tests --------------------------------------------------------------------------------

def test_sign_test_by_hand():
    base = np.zeros(8)
    cond = np.array([0.3, 1.0, 2.0, 0.1, 5.0, -4.0, 0.0, 0.0])  # 5 up, 1 down, 2 ties
    r = sign_test(base, cond)
    assert (r.b, r.c, r.method) == (1, 5, "sign")
    assert r.p_value == pytest.approx(2 * (1 + 6) / 64)  # 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert r.statistic == pytest.approx(cond.mean())


def test_sign_test_equals_mcnemar_on_binary_outcomes():
    base, cond = _outcomes(9, 2, 8, 4)
    assert sign_test(base, cond).p_value == pytest.approx(mcnemar(base, cond).p_value)


def test_permutation_exact_equal_magnitudes_by_hand():
    # Differences [1, 1, 1, -1]: each of the 16 sign patterns gives a sum 2k - 4 (k = terms that are +1);
    # |sum| >= 2 for k in {0, 1, 3, 4}: 1 + 4 + 4 + 1 = 10 patterns.
    r = paired_permutation(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0]))
    assert r.method == "permutation-exact"
    assert r.p_value == pytest.approx(10 / 16)
    assert (r.b, r.c) == (1, 3) and r.statistic == pytest.approx(0.5)


def test_permutation_exact_distinct_magnitudes_by_hand():
    # Differences [3, 1, 2, -0.5], observed |sum| = 5.5. Only ±(3+1+2+0.5) = ±6.5 and ±(3+1+2-0.5) = ±5.5 reach it:
    # 4 of the 16 patterns. Ties with zero differences change nothing.
    diff = np.array([3, 1, 2, -0.5])
    assert paired_permutation(np.zeros(4), diff).p_value == pytest.approx(4 / 16)
    padded = paired_permutation(np.zeros(7), np.r_[diff, 0, 0, 0])
    assert padded.p_value == pytest.approx(4 / 16) and padded.n == 7


def test_permutation_without_differences_has_p_one():
    x = np.array([0.2, 0.5, 0.9])
    assert paired_permutation(x, x).p_value == 1.0


def test_permutation_exact_matches_scipy():
    rng = np.random.default_rng(3)
    base, cond = rng.normal(size=10), rng.normal(0.4, 1, size=10)
    ref = sp.permutation_test((cond, base), lambda x, y, axis: np.mean(x - y, axis=axis),
                              permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    assert paired_permutation(base, cond).p_value == pytest.approx(ref.pvalue)


def test_permutation_monte_carlo_close_to_exact():
    rng = np.random.default_rng(4)
    base = rng.normal(size=17)
    cond = base + rng.normal(0.3, 1, size=17)  # 17 non-zero differences: past the exact limit
    diff = cond - base
    signs = ((np.arange(2**17)[:, None] >> np.arange(17)) & 1) * 2 - 1
    exact = np.mean(np.abs(signs @ diff) >= abs(diff.sum()) * (1 - 1e-12))
    r = paired_permutation(base, cond, n_resamples=20_000, seed=0)
    assert r.method == "permutation-mc"
    assert r.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20_000))


def test_permutation_monte_carlo_p_never_zero():
    r = paired_permutation(np.zeros(30), np.linspace(1, 2, 30), n_resamples=999)
    assert r.p_value == pytest.approx(1 / 1000)


def test_permutation_monte_carlo_chunking_does_not_change_draws():
    rng = np.random.default_rng(5)
    base, cond = rng.normal(size=40), rng.normal(0.2, 1, size=40)
    ps = {paired_permutation(base, cond, n_resamples=501, seed=2, chunk_size=k).p_value for k in (1, 37, 501, None)}
    assert len(ps) == 1


# --- dispatch and the verdict ----------------------------------------------------------------------------------

def test_paired_test_dispatches_on_binary_scores():
    base, cond = _outcomes(10, 1, 6, 3)
    assert paired_test(base.astype(float), cond.astype(bool)) == mcnemar(base, cond)
    f1 = np.array([0.5, 0.25, 1.0, 0.0])
    r = paired_test(f1, f1 + 0.1)
    assert r.method == "permutation-exact" and r.p_value == pytest.approx(2 / 16)


def _boot(low: float, high: float) -> BootstrapResult:
    return BootstrapResult(difference=(low + high) / 2, difference_ci=(low, high), retention=1.0,
                           retention_ci=(1.0, 1.0), statistic="mean", confidence=0.95, n_items=10, n_resamples=10)


def _test(p: float) -> PairedTestResult:
    return PairedTestResult(method="sign", statistic=0.0, p_value=p, n=10, b=1, c=1)


@pytest.mark.parametrize(("p", "ci", "expected"), [
    (0.20, (-0.1, 0.1), True),
    (0.05, (0.0, 0.1), True),   # p == alpha does not reject; a bound at 0 still contains it
    (0.01, (-0.1, 0.1), False),
    (0.20, (0.01, 0.1), False),
    (0.20, (-0.1, -0.01), False),
])
def test_indistinguishable_needs_both_criteria(p, ci, expected):
    assert indistinguishable(_test(p), _boot(*ci)) is expected


def test_indistinguishable_on_real_comparisons():
    rng = np.random.default_rng(6)
    base = rng.normal(size=300)
    assert indistinguishable(paired_test(base, base), paired_bootstrap(base, base, n_resamples=500))
    shifted = base + 0.5
    assert not indistinguishable(paired_test(base, shifted, n_resamples=500),
                                 paired_bootstrap(base, shifted, n_resamples=500))


# --- bootstrap -------------------------------------------------------------------------------------------------

def test_bootstrap_identical_arrays_give_zero_difference_and_unit_retention():
    x = np.random.default_rng(7).uniform(0.1, 1, size=50)
    r = paired_bootstrap(x, x, n_resamples=2000)
    assert r.difference == 0 and r.difference_ci == (0.0, 0.0)
    assert r.retention == 1 and r.retention_ci == (1.0, 1.0)
    assert (r.n_items, r.n_resamples, r.confidence, r.statistic) == (50, 2000, 0.95, "mean")


def test_bootstrap_constant_difference_is_degenerate_at_that_constant():
    base = np.random.default_rng(8).integers(0, 5, size=40).astype(float)
    r = paired_bootstrap(base, base + 2, n_resamples=1000)
    assert r.difference == pytest.approx(2)
    assert r.difference_ci == pytest.approx((2, 2), abs=1e-12)


def test_bootstrap_point_estimates_by_hand():
    base, cond = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    r = paired_bootstrap(base, cond, n_resamples=200)
    assert r.difference == pytest.approx(-0.25) and r.retention == pytest.approx(2 / 3)
    assert r.difference_ci[0] <= r.difference <= r.difference_ci[1]


def test_bootstrap_is_reproducible_and_seeded():
    rng = np.random.default_rng(9)
    base, cond = rng.uniform(size=80), rng.uniform(size=80)
    first, again, other = (paired_bootstrap(base, cond, n_resamples=500, seed=s) for s in (3, 3, 4))
    assert first == again and first != other


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_bootstrap_chunking_does_not_change_the_result(statistic):
    rng = np.random.default_rng(10)
    base, cond = rng.uniform(size=101), rng.uniform(size=101)
    results = {paired_bootstrap(base, cond, statistic=statistic, n_resamples=777, seed=1, chunk_size=k)
               for k in (1, 50, 777, None)}
    assert len(results) == 1


def test_bootstrap_matches_an_explicit_resampling_loop():
    rng = np.random.default_rng(11)
    base, cond = rng.uniform(size=30), rng.uniform(size=30)
    draws = np.random.default_rng(5).integers(0, 30, size=(300, 30))
    diffs = cond[draws].mean(axis=1) - base[draws].mean(axis=1)
    r = paired_bootstrap(base, cond, n_resamples=300, confidence=0.9, seed=5)
    assert r.difference_ci == pytest.approx(tuple(np.quantile(diffs, [0.05, 0.95])))


def test_bootstrap_pairing_narrows_the_interval():
    # Items differ a lot in difficulty, the condition shifts each by ~0.05: only pairing sees the shift.
    rng = np.random.default_rng(12)
    base = rng.normal(0, 1, size=200)
    cond = base + 0.05 + rng.normal(0, 0.01, size=200)
    r = paired_bootstrap(base, cond, n_resamples=2000)
    assert 0 < r.difference_ci[0] < r.difference < r.difference_ci[1]
    draw = np.random.default_rng(0)
    unpaired = (cond[draw.integers(0, 200, size=(2000, 200))].mean(axis=1)
                - base[draw.integers(0, 200, size=(2000, 200))].mean(axis=1))
    low, high = np.quantile(unpaired, [0.025, 0.975])
    assert low < 0 < high
    assert r.difference_ci[1] - r.difference_ci[0] < 0.05 * (high - low)


def test_bootstrap_retention_lower_is_better():
    base, cond = np.full(10, 2.0), np.full(10, 4.0)  # perplexity doubled: half retained
    r = paired_bootstrap(base, cond, higher_is_better=False, n_resamples=100)
    assert r.retention == pytest.approx(0.5) and r.retention_ci == pytest.approx((0.5, 0.5))
    assert paired_bootstrap(base, cond, n_resamples=100).retention == pytest.approx(2.0)


def test_bootstrap_zero_baseline_gives_nan_retention_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = paired_bootstrap(np.zeros(6), np.array([1, 0, 1, 0, 0, 1.0]), n_resamples=100)
    assert r.difference == pytest.approx(0.5)
    assert math.isnan(r.retention) and all(math.isnan(x) for x in r.retention_ci)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(confidence=1.0), "confidence"),
    (dict(n_resamples=0), "n_resamples"),
    (dict(statistic="mode"), "statistic"),
    (dict(chunk_size=0), "chunk_size"),
])
def test_bootstrap_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(np.ones(3), np.ones(3), **kwargs)


@pytest.mark.parametrize(("base", "cond"), [(np.ones(3), np.ones(4)), (np.ones((2, 2)), np.ones((2, 2))),
                                            (np.array([]), np.array([])), (np.array([1, np.nan]), np.ones(2))])
def test_inputs_must_be_paired_scores(base, cond):
    with pytest.raises(ValueError):
        paired_test(base, cond)


# --- seeds -----------------------------------------------------------------------------------------------------

def test_seed_summary_t_interval_by_hand():
    base = np.array([1.0, 1, 1, 0, 1, 0, 1, 1])
    seeds = {11: np.array([1.0, 1, 0, 0, 1, 0, 1, 0]),   # mean 0.5
             12: np.array([1.0, 1, 1, 0, 1, 0, 1, 0]),   # mean 0.625
             13: np.array([1.0, 0, 0, 0, 1, 0, 1, 0])}   # mean 0.375
    s = seed_summary(seeds, base, n_resamples=300)
    half = sp.t.ppf(0.975, df=2) * np.std([0.5, 0.625, 0.375], ddof=1) / math.sqrt(3)  # 4.303 * 0.125 / 1.732
    assert s.seeds == (11, 12, 13) and s.seed_means == (0.5, 0.625, 0.375)
    assert s.mean == pytest.approx(0.5)
    assert s.interval == pytest.approx((0.5 - half, 0.5 + half))
    assert s.across_seed_half_width == pytest.approx(half)
    assert s.difference == pytest.approx(0.5 - 0.75) and s.retention == pytest.approx(0.5 / 0.75)
    widths = [paired_bootstrap(base, v, n_resamples=300).difference_ci for v in seeds.values()]
    assert s.within_seed_half_width == pytest.approx(np.mean([(h - lo) / 2 for lo, h in widths]))
    assert seed_summary(list(seeds.values()), base, n_resamples=300).interval == s.interval


def test_seed_summary_single_seed_has_no_interval():
    s = seed_summary([np.array([1.0, 0, 1])], np.array([1.0, 1, 1]), n_resamples=50)
    assert s.seeds == (0,) and s.mean == pytest.approx(2 / 3)
    assert all(math.isnan(x) for x in s.interval)


def test_bootstrap_retention_above_a_floor_comes_from_the_same_resamples():
    rng = np.random.default_rng(3)
    base = (rng.random(300) < 0.6).astype(float)
    cond = np.where(rng.random(300) < 0.8, base, 1 - base)
    with_floor = paired_bootstrap(base, cond, floor=0.25)
    shifted = paired_bootstrap(base - 0.25, cond - 0.25)  # (cond - f) / (base - f) is retention of the shifted scores
    assert with_floor.above_floor == pytest.approx((cond.mean() - 0.25) / (base.mean() - 0.25))
    assert with_floor.above_floor_ci == pytest.approx(shifted.retention_ci)
    assert with_floor.retention_ci == paired_bootstrap(base, cond).retention_ci  # the floor changes nothing else
    assert np.isnan(paired_bootstrap(base, cond).above_floor)
    assert np.isnan(paired_bootstrap(base, cond, floor=0.9).above_floor)  # baseline below its floor: undefined
