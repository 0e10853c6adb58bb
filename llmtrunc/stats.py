"""Paired statistics of a drop condition against its baseline, scored on the same items.

Both arrays hold one score per item, in the same item order (accuracy 0/1, exact match, F1,
log-likelihood, ...). Because every item is scored under both settings, the item-to-item spread in
difficulty cancels in the difference: resampling and testing the *pairs* gives much tighter answers
than treating the two arrays as independent samples.

All resampling draws from ``numpy.random.default_rng(seed)`` in a fixed order, chunk after chunk.
PCG64 hands out its values one at a time whatever the request size, so the chunk size bounds the
memory used and never changes the draws (the tests pin this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _sp

from llmtrunc.retention import retention

# Index draws held at once while resampling: 2**22 int64 indices plus one gathered copy stay ~64 MB.
_CHUNK_ELEMENTS = 2**22
# Up to this many non-zero differences the permutation test enumerates all 2**m sign patterns.
_EXACT_MAX = 16
# A permuted |sum| within this fraction of sum(|d|) below the observed one is a tie (float sums reorder).
_TIE_RTOL = 1e-12

_STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}


@dataclass(frozen=True)
class BootstrapResult:
    """Difference (condition - baseline) and retention, each with its percentile interval; with a floor, also the
    retention above it, (condition - floor) / (baseline - floor), from the same resamples (NaN without one)."""

    difference: float
    difference_ci: tuple[float, float]
    retention: float
    retention_ci: tuple[float, float]
    statistic: str
    confidence: float
    n_items: int
    n_resamples: int
    above_floor: float = float("nan")
    above_floor_ci: tuple[float, float] = (float("nan"), float("nan"))


@dataclass(frozen=True)
class PairedTestResult:
    """A paired two-sided test; b counts items where the baseline does better, c the reverse.

    ``statistic`` is McNemar's continuity-corrected chi-square (for reference only: the p-value is
    the exact binomial one; NaN without discordant items), or the mean difference (condition -
    baseline) for the sign and permutation tests.
    """

    method: str
    statistic: float
    p_value: float
    n: int
    b: int
    c: int


@dataclass(frozen=True)
class SeedSummary:
    """A random-mask condition over several seeds, separating seed variation from item noise.

    ``interval`` is the t-interval of the mean over seeds (how much the mask draw moves the score);
    ``within_seed_half_width`` is the mean half-width of each seed's paired bootstrap interval of
    the difference (how much item sampling alone moves it). Both are on the score's scale.
    """

    seeds: tuple[int, ...]
    seed_means: tuple[float, ...]
    mean: float
    interval: tuple[float, float]
    difference: float
    retention: float
    within_seed_half_width: float
    confidence: float

    @property
    def across_seed_half_width(self) -> float:
        return (self.interval[1] - self.interval[0]) / 2


def paired_bootstrap(baseline: np.ndarray, condition: np.ndarray, *, statistic: Literal["mean", "median"] = "mean",
                     higher_is_better: bool = True, n_resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0, chunk_size: int | None = None, floor: float | None = None) -> BootstrapResult:
    """Percentile bootstrap of the difference and the retention, resampling items as pairs.

    Each resample draws item indices with replacement and applies them to both arrays, so the
    difference and the retention come from the same resamples. Retention is condition / baseline
    (baseline / condition when lower is better, e.g. perplexity) and NaN where its denominator is 0;
    its interval is NaN when some resample has a zero denominator, since it is then undefined there.
    ``floor`` (chance, for a higher-is-better score) adds the retention above it, defined only where the
    baseline is above the floor. ``chunk_size`` (resamples per chunk) only bounds memory; the result does not
    depend on it.
    """
    base, cond = _paired(baseline, condition)
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, not {statistic!r}")
    reduce = _STATISTICS[statistic]
    base_draws, cond_draws = np.empty(n_resamples), np.empty(n_resamples)
    rng = np.random.default_rng(seed)
    for start, stop in _chunks(n_resamples, chunk_size, len(base)):
        idx = rng.integers(0, len(base), size=(stop - start, len(base)))  # the same items for both arrays
        base_draws[start:stop], cond_draws[start:stop] = reduce(base[idx], axis=1), reduce(cond[idx], axis=1)
    base_point, cond_point = reduce(base), reduce(cond)
    quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
    diff_ci = np.quantile(cond_draws - base_draws, quantiles)
    ret_ci = np.quantile(retention(cond_draws, base_draws, higher_is_better), quantiles)
    above: dict = {}
    if floor is not None and not np.isnan(floor) and higher_is_better and base_point > floor:
        above_ci = np.quantile(retention(cond_draws - floor, base_draws - floor), quantiles)
        above = {"above_floor": float(retention(cond_point - floor, base_point - floor)),
                 "above_floor_ci": (float(above_ci[0]), float(above_ci[1]))}
    return BootstrapResult(
        difference=float(cond_point - base_point),
        difference_ci=(float(diff_ci[0]), float(diff_ci[1])),
        retention=float(retention(cond_point, base_point, higher_is_better)),
        retention_ci=(float(ret_ci[0]), float(ret_ci[1])),
        statistic=statistic, confidence=confidence, n_items=len(base), n_resamples=n_resamples, **above,
    )


def mcnemar(baseline_correct: np.ndarray, condition_correct: np.ndarray) -> PairedTestResult:
    """McNemar's test on paired right/wrong outcomes, with the exact binomial p-value.

    Only discordant items carry information: under the null each is equally likely to favour
    either side, so min(b, c) ~ Binomial(b + c, 1/2).
    """
    base, cond = _paired(baseline_correct, condition_correct)
    if not (_is_binary(base) and _is_binary(cond)):
        raise ValueError("mcnemar needs binary outcomes (bool or 0/1)")
    b = int(np.sum((base == 1) & (cond == 0)))
    c = int(np.sum((base == 0) & (cond == 1)))
    chi2 = (abs(b - c) - 1) ** 2 / (b + c) if b + c else float("nan")
    return PairedTestResult("mcnemar", float(chi2), _binomial_p(b, c), len(base), b, c)


def sign_test(baseline: np.ndarray, condition: np.ndarray) -> PairedTestResult:
    """Two-sided binomial test on the signs of the non-zero differences; ignores their size."""
    base, cond = _paired(baseline, condition)
    diff = cond - base
    b, c = int(np.sum(diff < 0)), int(np.sum(diff > 0))
    return PairedTestResult("sign", float(diff.mean()), _binomial_p(b, c), len(base), b, c)


def paired_permutation(baseline: np.ndarray, condition: np.ndarray, *, n_resamples: int = 10_000, seed: int = 0,
                       chunk_size: int | None = None) -> PairedTestResult:
    """Two-sided sign-flip permutation test of the mean difference.

    Under the null each item's two scores are exchangeable, so every difference is equally likely
    to carry either sign. Exact over all 2**m sign patterns when m (the non-zero differences) is at
    most 16; otherwise Monte Carlo with p = (hits + 1) / (n_resamples + 1), which is never 0.
    """
    base, cond = _paired(baseline, condition)
    _check_resamples(n_resamples)
    diff = cond - base
    nonzero = diff[diff != 0]
    b, c = int(np.sum(diff < 0)), int(np.sum(diff > 0))
    observed = abs(nonzero.sum())
    threshold = observed - _TIE_RTOL * np.abs(nonzero).sum()
    m = len(nonzero)
    if m <= _EXACT_MAX:
        signs = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        p = float(np.mean(np.abs(signs @ nonzero) >= threshold))
        method = "permutation-exact"
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        for start, stop in _chunks(n_resamples, chunk_size, m):
            signs = rng.integers(0, 2, size=(stop - start, m)) * 2 - 1
            hits += int(np.sum(np.abs(signs @ nonzero) >= threshold))
        p = (hits + 1) / (n_resamples + 1)
        method = "permutation-mc"
    return PairedTestResult(method, float(diff.mean()), p, len(base), b, c)


def paired_test(baseline: np.ndarray, condition: np.ndarray, *, n_resamples: int = 10_000,
                seed: int = 0) -> PairedTestResult:
    """McNemar for binary (accuracy-type) scores, the sign-flip permutation test otherwise."""
    base, cond = _paired(baseline, condition)
    if _is_binary(base) and _is_binary(cond):
        return mcnemar(base, cond)
    return paired_permutation(base, cond, n_resamples=n_resamples, seed=seed)


def indistinguishable(test: PairedTestResult, bootstrap: BootstrapResult, alpha: float = 0.05) -> bool:
    """True when the condition cannot be told from its baseline: no rejection and the CI covers 0.

    The two rest on different assumptions (a test of no effect, an interval from resampled items),
    so a verdict of "nothing lost" should not hang on one of them alone.
    """
    low, high = bootstrap.difference_ci
    return bool(test.p_value >= alpha and low <= 0 <= high)


def seed_summary(values_per_seed: Mapping[int, np.ndarray] | Sequence[np.ndarray], baseline: np.ndarray, *,
                 higher_is_better: bool = True, confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> SeedSummary:
    """Mean of a random-mask condition over mask seeds, with across-seed and within-seed spread.

    The across-seed interval is a t-interval over the per-seed means (NaN with one seed). The
    within-seed noise bootstraps every seed with the same resampling ``seed``, so it reflects the
    data and not the resampling.
    """
    _check_confidence(confidence)
    per_seed = dict(values_per_seed) if isinstance(values_per_seed, Mapping) else dict(enumerate(values_per_seed))
    if not per_seed:
        raise ValueError("seed_summary needs at least one seed")
    base = np.asarray(baseline, dtype=float)
    boots = [paired_bootstrap(base, v, higher_is_better=higher_is_better, n_resamples=n_resamples,
                              confidence=confidence, seed=seed) for v in per_seed.values()]
    means = np.array([np.mean(np.asarray(v, dtype=float)) for v in per_seed.values()])
    mean = float(means.mean())
    k = len(means)
    if k > 1:
        half = _sp.t.ppf((1 + confidence) / 2, df=k - 1) * means.std(ddof=1) / np.sqrt(k)
        interval = (float(mean - half), float(mean + half))
    else:
        interval = (float("nan"), float("nan"))
    return SeedSummary(
        seeds=tuple(int(s) for s in per_seed), seed_means=tuple(float(x) for x in means), mean=mean,
        interval=interval, difference=mean - float(base.mean()),
        retention=float(retention(mean, base.mean(), higher_is_better)),
        within_seed_half_width=float(np.mean([(r.difference_ci[1] - r.difference_ci[0]) / 2 for r in boots])),
        confidence=confidence,
    )


def _paired(baseline: np.ndarray, condition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base, cond = np.asarray(baseline, dtype=float), np.asarray(condition, dtype=float)
    if base.ndim != 1 or base.shape != cond.shape:
        raise ValueError(f"need two 1-D arrays of per-item scores of one length, got {base.shape} and {cond.shape}")
    if len(base) == 0:
        raise ValueError("need at least one item")
    if np.isnan(base).any() or np.isnan(cond).any():
        raise ValueError("per-item scores contain NaN")
    return base, cond


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _binomial_p(b: int, c: int) -> float:
    return float(_sp.binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0


def _chunks(total: int, size: int | None, row_length: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of resamples; by default as many as fit the element budget."""
    if size is None:
        size = max(1, _CHUNK_ELEMENTS // row_length)
    elif size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {size}")
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_resamples(n_resamples: int) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
