"""Activation profiles: the outlier rule shared with the encoder analyses, magnitudes, and the on-disk cache."""

import json

import numpy as np

from llmtrunc.profile import Profile, ProfileCache, outlier_dims


def test_profile_of_rows_is_the_analyses_rule():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 64)).astype(np.float32)
    rows[:, 5] += 4.0
    rows[:, 40] -= 6.0
    profile = Profile.of(rows, {"source": "test"})
    assert profile.outliers == (5, 40) == tuple(outlier_dims(rows.astype(np.float64).mean(axis=0)))
    assert np.array_equal(profile.mean, rows.astype(np.float64).mean(axis=0))
    assert np.array_equal(profile.mean_abs, np.abs(rows.astype(np.float64)).mean(axis=0))
    assert profile.describe() == {"source": "test", "n_outliers": 2, "outliers": [5, 40]}


def test_outlier_rule_by_hand():
    mean = np.zeros(20)
    mean[3] = 100.0  # mean of means 5, std sqrt(19 * 25 + 95**2) / sqrt(20) = 21.8; |100 - 5| > 65.4
    assert outlier_dims(mean).tolist() == [3]
    assert outlier_dims(np.ones(8)).tolist() == []  # no spread, no outlier


def test_cache_hit_miss_and_corrupt_entry(tmp_path):
    cache = ProfileCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return Profile([0.1, -2.0 / 3.0, 1e-300], [0.1, 2.0 / 3.0, 1e-300], {"source": "x", "tokens": 3})

    key = {"pretrained": "m", "at": "post-norm", "calibration": {"sha256": "ab", "tokens": 3, "chunk": 2}}
    first = cache.get_or_compute(key, "m__post-norm", compute)
    again = ProfileCache(tmp_path).get_or_compute(key, "m__post-norm", compute)
    assert len(calls) == 1  # the second cache object found the file
    assert np.array_equal(first.mean, again.mean) and np.array_equal(first.mean_abs, again.mean_abs)  # exact floats
    assert again.calibration == first.calibration
    other = {**key, "calibration": {**key["calibration"], "sha256": "cd"}}
    cache.get_or_compute(other, "m__post-norm", compute)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    path = cache.path(key, "m__post-norm")
    path.write_text(path.read_text()[:40])  # a partial file is a miss, rebuilt
    cache.get_or_compute(key, "m__post-norm", compute)
    assert len(calls) == 3 and json.loads(path.read_text())["key"] == key
    assert (cache.hits, cache.misses) == (0, 3)
