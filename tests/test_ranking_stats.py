"""Welch's t-test and the incomplete beta function behind its p-value."""

from __future__ import annotations

import math

import jax.scipy.special
import numpy as np
import pytest

from nnrs_jax import ranking
from nnrs_jax.ranking.stats import _betainc


@pytest.mark.parametrize(
    "a, b, x",
    [(2.0, 0.5, 0.3), (0.5, 0.5, 0.9), (10.0, 0.5, 0.99), (1.7, 0.5, 0.01), (200.0, 0.5, 0.999),
     (3.5, 0.5, 0.5), (0.5, 0.5, 1e-6)],
)  # fmt: skip
def test_incomplete_beta_matches_jax(a, b, x):
    expected = float(jax.scipy.special.betainc(np.float64(a), np.float64(b), np.float64(x)))
    assert _betainc(a, b, x) == pytest.approx(expected, rel=1e-12, abs=1e-300)


# Two-sided 5 % critical values of Student's t (any statistics table): p must be 0.05 there.
@pytest.mark.parametrize("df, t", [(1, 12.7062), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_p_value_at_tabulated_critical_values(df, t):
    assert _betainc(df / 2, 0.5, df / (df + t * t)) == pytest.approx(0.05, abs=2e-5)


def test_welch_statistic_and_degrees_of_freedom():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    result = ranking.welch_t_test(a, b)
    assert result.t == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb), rel=1e-14)
    assert result.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 2), rel=1e-14)
    x = result.df / (result.df + result.t**2)
    expected = float(jax.scipy.special.betainc(result.df / 2, 0.5, x))
    assert result.p == pytest.approx(expected, rel=1e-12)
    swapped = ranking.welch_t_test(b, a)
    assert (swapped.t, swapped.df, swapped.p) == pytest.approx((-result.t, result.df, result.p))


def test_welch_is_calibrated_under_the_null():
    # Equal means, unequal variances, 5 values each: Welch keeps the false-positive rate near
    # alpha where Student's pooled test would not; 4000 trials give a standard error of 0.35 %.
    rng = np.random.default_rng(0)
    p = [ranking.welch_t_test(rng.normal(0, 1, 5), rng.normal(0, 3, 5)).p for _ in range(4000)]
    assert 0.035 < np.mean(np.array(p) < 0.05) < 0.065
    # and detects a large shift almost always
    p = [ranking.welch_t_test(rng.normal(3, 1, 5), rng.normal(0, 1, 5)).p for _ in range(500)]
    assert np.mean(np.array(p) < 0.05) > 0.95


def test_welch_zero_variance():
    assert ranking.welch_t_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    result = ranking.welch_t_test([2.0, 2.0], [1.0, 1.0])
    assert result.p == 0.0 and result.t == math.inf


@pytest.mark.parametrize("a", [[0.9], [[0.9, 0.8]], [0.9, float("nan")]])
def test_welch_rejects_bad_samples(a):
    with pytest.raises(ValueError, match=r"welch_t_test: a must be a 1-D sample of at least 2"):
        ranking.welch_t_test(a, [0.1, 0.2])
