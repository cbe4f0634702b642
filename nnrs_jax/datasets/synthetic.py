"""Synthetic sequence tasks, generated from a seed: the adding problem."""

from __future__ import annotations

import numpy as np

from nnrs_jax._validate import check_int

__all__ = ["adding_problem"]


def adding_problem(n: int, length: int = 100, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: add the two marked numbers of a long sequence.

    Each of the ``n`` sequences has ``length`` steps of two features: a number drawn uniformly
    from ``[0, 1)``, and a marker that is 1 at exactly two steps and 0 elsewhere, one marked
    step drawn uniformly from the first half and one from the second half. The target is the
    sum of the two marked numbers::

        x[i, t] = (u[i, t], m[i, t])     y[i] = Σ_t u[i, t]·m[i, t]

    The sum of two uniform numbers has variance 2/12, so always answering its mean, 1, has a
    mean squared error of ``1/6 ≈ 0.167``; a model must carry the first marked number across
    at least ``length / 2`` steps to do better. Reference: Hochreiter & Schmidhuber 1997,
    "Long short-term memory", experiment 4 (this is the common simplification of Le et al.
    2015, "A simple way to initialize recurrent networks of rectified linear units").

    Args:
        n: the number of sequences, an int >= 1.
        length: the steps per sequence, an int >= 2.
        seed: the NumPy seed; equal arguments give equal arrays.

    Returns:
        ``x`` float32 ``(n, length, 2)`` and ``y`` float32 ``(n, 1)``.

    Examples:
        >>> from nnrs_jax.datasets import adding_problem
        >>> x, y = adding_problem(4, 10)
        >>> x.shape, y.shape, x[..., 1].sum(axis=1).tolist()
        ((4, 10, 2), (4, 1), [2.0, 2.0, 2.0, 2.0])
    """
    n = check_int("adding_problem", "n", n, low=1)
    length = check_int("adding_problem", "length", length, low=2)
    seed = check_int("adding_problem", "seed", seed, low=0)
    rng = np.random.default_rng(seed)
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    marks = np.zeros((n, length), np.float32)
    rows = np.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second])[:, None]
    return np.stack([values, marks], axis=-1), y.astype(np.float32)
