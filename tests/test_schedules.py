"""Schedules: documented values at t = 1, mid-way and the end, against Python `math`."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnrs_jax.schedules import constant, cosine_decay, exponential_decay, warmup_cosine_decay

F32 = {"rtol": 1e-6, "atol": 1e-7}  # the float32 result against a float64 formula
F64 = {"rtol": 1e-14, "atol": 1e-15}


def exp_formula(t: int, init: float, rate: float, steps: int, staircase: bool = False) -> float:
    exponent = t // steps if staircase else t / steps
    return init * rate**exponent


def cos_formula(t: int, init: float, steps: int, alpha: float = 0.0) -> float:
    return init * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)) + alpha)


def warmup_formula(t: int, peak: float, warmup: int, total: int, init: float, end: float) -> float:
    if t < warmup:
        return init + (peak - init) * t / warmup
    fraction = min(t - warmup, total - warmup) / (total - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * fraction))


CASES: list[tuple[str, Callable, Callable[[int], float], list[int]]] = [
    ("constant", lambda **kw: constant(0.3, **kw), lambda t: 0.3, [1, 50, 100]),
    (
        "exponential",
        lambda **kw: exponential_decay(0.1, 0.5, 100, **kw),
        lambda t: exp_formula(t, 0.1, 0.5, 100),
        [1, 50, 100, 250],
    ),
    (
        "exponential_staircase",
        lambda **kw: exponential_decay(0.1, 0.5, 10, staircase=True, **kw),
        lambda t: exp_formula(t, 0.1, 0.5, 10, staircase=True),
        [1, 9, 10, 19, 20, 35],
    ),
    (
        "exponential_growth",
        lambda **kw: exponential_decay(0.01, 2.0, 10, **kw),
        lambda t: exp_formula(t, 0.01, 2.0, 10),
        [1, 5, 10, 30],
    ),
    (
        "cosine",
        lambda **kw: cosine_decay(0.1, 100, **kw),
        lambda t: cos_formula(t, 0.1, 100),
        [1, 25, 50, 99, 100, 150],
    ),
    (
        "cosine_alpha",
        lambda **kw: cosine_decay(0.1, 100, alpha=0.2, **kw),
        lambda t: cos_formula(t, 0.1, 100, 0.2),
        [1, 50, 100, 1000],
    ),
    (
        "warmup_cosine",
        lambda **kw: warmup_cosine_decay(1.0, 10, 110, **kw),
        lambda t: warmup_formula(t, 1.0, 10, 110, 0.0, 0.0),
        [1, 5, 9, 10, 11, 60, 109, 110, 200],
    ),
    (
        "warmup_cosine_ends",
        lambda **kw: warmup_cosine_decay(0.5, 20, 120, init_value=0.1, end_value=0.05, **kw),
        lambda t: warmup_formula(t, 0.5, 20, 120, 0.1, 0.05),
        [1, 10, 20, 70, 120, 500],
    ),
    (
        "warmup_cosine_no_warmup",
        lambda **kw: warmup_cosine_decay(0.5, 0, 100, **kw),
        lambda t: warmup_formula(t, 0.5, 0, 100, 0.0, 0.0),
        [1, 50, 100, 101],
    ),
]


@pytest.mark.parametrize(("name", "build", "formula", "steps"), CASES, ids=[c[0] for c in CASES])
def test_documented_values(name: str, build: Callable, formula: Callable, steps: list) -> None:
    expected = np.array([formula(t) for t in steps])
    schedule32, schedule64 = build(), build(dtype=jnp.float64)
    values32 = np.array([schedule32(t) for t in steps])
    assert values32.dtype == np.float32
    np.testing.assert_allclose(values32, expected, **F32)
    values64 = np.array([schedule64(t) for t in steps])
    assert values64.dtype == np.float64
    np.testing.assert_allclose(values64, expected, **F64)
    # Jitted, on an int32 array of timesteps (as the optimizers pass it), element-wise.
    jitted = jax.jit(schedule64)(jnp.asarray(steps, jnp.int32))
    assert jitted.shape == (len(steps),)
    np.testing.assert_allclose(jitted, expected, **F64)
    scalar = jax.jit(schedule64)(jnp.asarray(steps[0], jnp.int32))
    assert scalar.shape == ()
    np.testing.assert_allclose(scalar, expected[0], **F64)


def test_landmarks() -> None:
    """The values the docstrings promise at the ends of each phase, exactly in float64."""
    f64 = jnp.float64
    assert float(cosine_decay(0.1, 100, dtype=f64)(100)) == 0.0
    assert float(cosine_decay(0.1, 100, alpha=0.2, dtype=f64)(100)) == pytest.approx(0.02)
    warm = warmup_cosine_decay(1.0, 10, 110, init_value=0.0, end_value=0.05, dtype=f64)
    assert float(warm(1)) == pytest.approx(0.1, rel=1e-15)
    assert float(warm(10)) == 1.0
    assert float(warm(110)) == pytest.approx(0.05, rel=1e-15)
    assert float(warm(10_000)) == pytest.approx(0.05, rel=1e-15)
    assert float(exponential_decay(0.1, 0.5, 10, dtype=f64)(0)) == 0.1


def test_end_value_clips_the_decay() -> None:
    decay = exponential_decay(1.0, 0.5, 1, end_value=0.1, dtype=jnp.float64)
    np.testing.assert_allclose([float(decay(t)) for t in (1, 3, 4, 50)], [0.5, 0.125, 0.1, 0.1])
    growth = exponential_decay(1.0, 2.0, 1, end_value=5.0, dtype=jnp.float64)
    np.testing.assert_allclose([float(growth(t)) for t in (1, 2, 3, 50)], [2.0, 4.0, 5.0, 5.0])


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: constant(0.0),
        lambda: constant(math.inf),
        lambda: exponential_decay(-0.1, 0.5, 10),
        lambda: exponential_decay(0.1, 0.0, 10),
        lambda: exponential_decay(0.1, 0.5, 0),
        lambda: exponential_decay(0.1, 0.5, 10, end_value=0.2),
        lambda: exponential_decay(0.1, 2.0, 10, end_value=0.05),
        lambda: cosine_decay(0.1, 0),
        lambda: cosine_decay(0.1, 10, alpha=1.5),
        lambda: cosine_decay(math.nan, 10),
        lambda: warmup_cosine_decay(1.0, 10, 10),
        lambda: warmup_cosine_decay(1.0, -1, 10),
        lambda: warmup_cosine_decay(0.0, 1, 10),
        lambda: warmup_cosine_decay(1.0, 1, 10, init_value=-0.1),
        lambda: warmup_cosine_decay(1.0, 1, 10, end_value=math.inf),
        lambda: exponential_decay(np.float32("inf"), 0.5, 10),
    ],
)
def test_bad_arguments_raise_value_error(make_bad: Callable) -> None:
    with pytest.raises(ValueError, match=r"^\w+: \w+ (\(the total length\) )?must"):
        make_bad()


def test_wrong_argument_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match=r"^exponential_decay: transition_steps must be an int, "
                       r"got 10\.0 \(float\)"):  # fmt: skip
        exponential_decay(0.1, 0.5, 10.0)
    with pytest.raises(TypeError, match=r"^exponential_decay: staircase must be a bool, got 1"):
        exponential_decay(0.1, 0.5, 10, staircase=1)
    with pytest.raises(TypeError, match=r"^cosine_decay: init_value must be a float, got '0\.1'"):
        cosine_decay("0.1", 10)
    with pytest.raises(TypeError, match=r"^warmup_cosine_decay: warmup_steps must be an int, got"):
        warmup_cosine_decay(1.0, True, 10)
    with pytest.raises(TypeError, match=r"^constant: dtype must be a floating dtype, got int32"):
        constant(0.1, dtype=jnp.int32)


def test_numpy_scalars_are_accepted() -> None:
    ts = jnp.arange(1, 12)
    pairs = [
        (constant(np.float32(0.5)), constant(0.5)),
        (cosine_decay(np.float64(0.1), np.int64(10), np.float32(0.5)), cosine_decay(0.1, 10, 0.5)),
        (
            exponential_decay(0.1, np.float32(0.5), np.int32(3), np.True_),
            exponential_decay(0.1, 0.5, 3, True),
        ),
        (
            warmup_cosine_decay(1.0, np.int64(2), np.int64(10), np.float64(0.1)),
            warmup_cosine_decay(1.0, 2, 10, 0.1),
        ),
    ]
    for numpy_args, python_args in pairs:
        np.testing.assert_array_equal(numpy_args(ts), python_args(ts))
