"""Parameter trees and file checks shared by the checkpoint tests."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.layers.dense import DenseParams


def mlp_params(key: jax.Array, dtype, dims=(4, 3, 2)) -> tuple:
    """``(DenseParams, (), DenseParams)`` of shapes ``dims``: a dense-activation-dense model."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    d0, d1, d2 = dims
    return (
        DenseParams(jax.random.normal(k1, (d0, d1), dtype), jax.random.normal(k2, (d1,), dtype)),
        (),
        DenseParams(jax.random.normal(k3, (d1, d2), dtype), jax.random.normal(k4, (d2,), dtype)),
    )


def assert_bit_identical(restored, expected) -> None:
    """Same tree, and every leaf a `jax.Array` with the same dtype, shape and bytes."""
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert isinstance(a, jax.Array)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def listing(folder: Path) -> list[str]:
    """The sorted names in ``folder``, temporary files included."""
    return sorted(os.listdir(folder))


def csv_params(key: jax.Array, dtype, dims=(5, 3, 2)) -> tuple:
    """Two dense layers around a non-dense leaf; the rows of the first span 1e-30 to 1e30."""
    (d0, _, d2) = mlp_params(key, dtype, dims=dims)
    scale = jnp.asarray(np.logspace(-30, 30, dims[0]), dtype)[:, None]
    d0 = DenseParams(d0.w * scale, d0.b)
    return (d0, {"gain": jnp.full((dims[1],), 2.0, dtype)}, d2)
