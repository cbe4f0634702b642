"""The adding problem: its markers, its targets, its seed and its baseline."""

from __future__ import annotations

import numpy as np
import pytest

from nnrs_jax.datasets import adding_problem


def test_two_markers_one_in_each_half_and_the_target_is_their_sum():
    x, y = adding_problem(500, 30, seed=3)
    assert x.shape == (500, 30, 2) and y.shape == (500, 1)
    assert x.dtype == y.dtype == np.float32
    marks = x[..., 1]
    assert set(np.unique(marks)) == {0.0, 1.0}
    assert np.all(marks[:, :15].sum(axis=1) == 1) and np.all(marks[:, 15:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(axis=1), rtol=1e-6)
    assert np.all((x[..., 0] >= 0) & (x[..., 0] < 1))


def test_equal_seeds_equal_arrays_other_seeds_other_arrays():
    a, b, c = adding_problem(8, 10, seed=1), adding_problem(8, 10, seed=1), adding_problem(8, 10)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_answering_one_scores_a_sixth():
    """The baseline the adding problem is measured against: Var(u1 + u2) = 2/12."""
    _, y = adding_problem(40_000, 100, seed=0)
    assert abs(float(np.mean((y - 1.0) ** 2)) - 1 / 6) < 0.005


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "adding_problem: n must be"),
        ({"n": 4, "length": 1}, "adding_problem: length must be"),
        ({"n": 4, "seed": -1}, "adding_problem: seed must be"),
        ({"n": 2.5}, "adding_problem: n must be"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        adding_problem(**kwargs)
