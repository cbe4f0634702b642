"""Small utilities shared by the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rel_err(a, b) -> float:
    """Largest norm-wise relative difference ``max|a − b| / max|b|`` over matching leaves."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    worst = 0.0
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        scale = max(np.max(np.abs(y), initial=0.0), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0) / scale))
    return worst


TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}
