"""`clip` and `clip_by_global_norm` against independent NumPy code, and their checks.

``pytest tests/test_optim_clipping.py -s -k numpy`` prints the table
"transformation | mode | max deviation".
"""

from __future__ import annotations

import math
from typing import ClassVar

import chex
import jax.numpy as jnp
import numpy as np
from optim_helpers import (
    BadHyperparameter,
    Case,
    NpClip,
    NpGlobalNorm,
    TransformContract,
    problem,
)

from nnrs_jax.optim import clip, clip_by_global_norm


class TestClipping(TransformContract):
    """`clip` and `clip_by_global_norm`."""

    CASES: ClassVar[dict[str, Case]] = {
        "clip": (lambda: clip(0.7), lambda: NpClip(0.7)),
        "clip_by_global_norm": (lambda: clip_by_global_norm(3.0), lambda: NpGlobalNorm(3.0)),
    }
    BAD_HYPERPARAMETERS: ClassVar[list[BadHyperparameter]] = [
        (lambda: clip(0.0), ValueError, r"clip: max_delta must be a finite float > 0, got 0.0"),
        (lambda: clip(-math.inf), ValueError, "clip: max_delta must be"),
        (lambda: clip(True), TypeError, r"clip: max_delta must be a float, got True \(bool\)"),
        (
            lambda: clip_by_global_norm(-1.0),
            ValueError,
            "max_norm must be a finite float > 0, got -1.0",
        ),
        (
            lambda: clip_by_global_norm(math.nan),
            ValueError,
            "clip_by_global_norm: max_norm must be",
        ),
    ]


def test_clipping_is_active_and_inactive_in_the_trajectory() -> None:
    """The clipping cases exercise both branches: some steps are clipped and some are not."""
    _, grads = problem()
    norms = np.sqrt(np.sum(grads["w"] ** 2, axis=(1, 2)) + np.sum(grads["b"] ** 2, axis=1))
    assert np.any(norms > 3.0) and np.any(norms < 3.0)
    assert np.any(np.abs(grads["w"]) > 0.7) and np.any(np.abs(grads["w"]) < 0.7)


def test_global_norm_of_a_small_tree_passes_unchanged_and_a_large_one_keeps_direction() -> None:
    opt = clip_by_global_norm(5.0)
    small = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0 - 1e-12])}
    chex.assert_trees_all_equal(opt.update(small, opt.init(small))[0], small)
    large = {"a": jnp.array([30.0, 0.0]), "b": jnp.array([40.0])}
    clipped = opt.update(large, opt.init(large))[0]
    np.testing.assert_allclose(clipped["a"], [3.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(clipped["b"], [4.0], rtol=1e-15)
