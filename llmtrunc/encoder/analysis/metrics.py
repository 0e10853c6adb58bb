"""Embedding-space metrics, each a few lines of numpy so the tests can check them by hand.

uniformity(x)        log E_{i<j} exp(-t ||z_i - z_j||^2), z = x / ||x||, t = 2 (Wang & Isola 2020; SimCSE).
                     Lower is more uniform; -4 is the limit for points spread on a high-dimensional sphere.
alignment(x, y)      E ||z_x - z_y||^alpha over positive pairs, alpha = 2 (lower = positives closer).
isoscore(x)          IsoScore (Rudman et al. 2022) as the PyPI package IsoScore 2.0.1 computes it: eigenvalues of
                     the covariance, scaled to norm sqrt(n), isotropy defect to (1..1), rescaled to [0, 1].
                     1 for isotropic samples, ~0 when all variance lies on one line. `isoscore_package` calls
                     the package itself (torch) for the cross-check.
corr_mean(x)         mean |Pearson r| over pairs of distinct dimensions (constant dimensions skipped).

Outlier dimensions are not computed here: the analysis resolves the `outliers` drop against the fit side's
profile (llmtrunc.profile), as both tracks do.
"""

from __future__ import annotations

import numpy as np



def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sample_rows(x: np.ndarray, max_rows: int | None, seed: int = 0) -> np.ndarray:
    if max_rows is None or len(x) <= max_rows:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]


def uniformity(x: np.ndarray, t: float = 2.0, max_rows: int | None = 5000, seed: int = 0) -> float:
    z = unit(sample_rows(x, max_rows, seed))
    n = len(z)
    if n < 2:
        raise ValueError("uniformity needs at least two rows")
    sq = np.clip(2.0 - 2.0 * (z @ z.T), 0.0, None)  # ||zi - zj||^2 for unit vectors
    iu = np.triu_indices(n, 1)
    values = -t * sq[iu]
    top = values.max()
    return float(top + np.log(np.mean(np.exp(values - top))))  # stable log-mean-exp


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("alignment needs the same positive number of rows on both sides")
    return float(np.mean(np.linalg.norm(unit(x) - unit(y), axis=1) ** alpha))


def isoscore(x: np.ndarray) -> float:
    points = np.asarray(x, dtype=np.float64)
    n = points.shape[1]
    eig = np.clip(np.linalg.eigvalsh(np.cov(points.T)), 0.0, None)
    eig_norm = eig * np.sqrt(n) / np.linalg.norm(eig)
    defect = np.linalg.norm(eig_norm - 1.0) / np.sqrt(2 * (n - np.sqrt(n)))
    return float(((n - defect**2 * (n - np.sqrt(n))) ** 2 - n) / (n * (n - 1)))


def isoscore_package(x: np.ndarray) -> float:
    """The PyPI IsoScore 2.0.1 implementation (torch), for the cross-check."""
    from IsoScore.IsoScore import IsoScore

    return float(IsoScore(np.asarray(x, dtype=np.float64)))


def corr_mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[:, x.std(axis=0) > 0]
    if x.shape[1] < 2:
        raise ValueError("corr_mean needs at least two non-constant dimensions")
    c = np.abs(np.corrcoef(x.T))
    d = c.shape[0]
    return float((c.sum() - np.trace(c)) / (d * (d - 1)))
