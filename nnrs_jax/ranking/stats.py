"""Welch's t-test and the regularized incomplete beta function behind its p-value."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = ["TTest", "welch_t_test"]


class TTest(NamedTuple):
    """Welch's t-test of ``mean(a) - mean(b)``: statistic, degrees of freedom, two-sided p."""

    t: float
    df: float
    p: float


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (continued fraction, Lentz).

    Reference: Press et al., Numerical Recipes, 3rd ed., section 6.4.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast for x below the mean; above it, use I_x(a, b) = 1 - I_1-x(b, a).
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, 1000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d, c = 1.0 / guard(1.0 + even * d), guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d, c = 1.0 / guard(1.0 + odd * d), guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"_betainc: no convergence for a={a}, b={b}, x={x}")


def welch_t_test(a: Any, b: Any) -> TTest:
    """Welch's two-sample t-test of ``mean(a) - mean(b)``, unequal variances, two-sided.

    $$
    t = \\frac{\\bar a - \\bar b}{\\sqrt{s_a^2/n_a + s_b^2/n_b}}, \\qquad
    \\nu = \\frac{(s_a^2/n_a + s_b^2/n_b)^2}
    {\\frac{(s_a^2/n_a)^2}{n_a - 1} + \\frac{(s_b^2/n_b)^2}{n_b - 1}},
    \\qquad p = I_{\\nu/(\\nu + t^2)}(\\nu/2, 1/2)
    $$

    with sample variances ``s²`` (ddof 1) and ``I`` the regularized incomplete beta function
    (the Student t tail). When both samples have zero variance, ``p`` is 1 for equal means and
    0 otherwise. Reference: Welch 1947, "The generalization of Student's problem".

    Args:
        a, b: 1-D samples of at least two values each.

    Examples:
        >>> from nnrs_jax.ranking import welch_t_test
        >>> r = welch_t_test([0.91, 0.92, 0.93], [0.90, 0.91, 0.92])
        >>> round(r.t, 4), round(r.df, 1), round(r.p, 4)
        (1.2247, 4.0, 0.2879)
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for name, s in (("a", a), ("b", b)):
        if s.ndim != 1 or len(s) < 2 or not np.isfinite(s).all():
            raise ValueError(
                f"welch_t_test: {name} must be a 1-D sample of at least 2 finite values, got "
                f"shape {s.shape}"
            )
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    diff = float(np.mean(a) - np.mean(b))
    if va + vb == 0:
        return TTest(math.copysign(math.inf, diff) if diff else 0.0, len(a) + len(b) - 2.0,
                     0.0 if diff else 1.0)  # fmt: skip
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return TTest(float(t), float(df), _betainc(float(df) / 2, 0.5, float(df / (df + t * t))))
