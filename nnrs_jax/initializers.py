"""Weight initializers: ``init(key, shape, dtype) -> array`` with ``shape = (fan_in, fan_out)``."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["Initializer", "glorot", "he", "lecun", "resolve"]

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def _normal(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype, var: float) -> jax.Array:
    return math.sqrt(var) * jax.random.normal(key, shape, dtype)


def he(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """He (Kaiming) normal: ``w ~ N(0, 2 / fan_in)``.

    Reference: He et al. 2015, "Delving Deep into Rectifiers". Suits ReLU-family activations.
    """
    return _normal(key, shape, dtype, 2.0 / shape[0])


def lecun(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """LeCun normal: ``w ~ N(0, 1 / fan_in)``.

    Reference: LeCun et al. 1998, "Efficient BackProp". The variance SELU is designed for.
    """
    return _normal(key, shape, dtype, 1.0 / shape[0])


def glorot(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Glorot (Xavier) normal: ``w ~ N(0, 2 / (fan_in + fan_out))``.

    Reference: Glorot & Bengio 2010. Note: the seed (nn-rs) used variance ``1 / (in + out)``,
    half of the paper's; this is the paper's.
    """
    return _normal(key, shape, dtype, 2.0 / (shape[0] + shape[1]))


_BY_NAME: dict[str, Initializer] = {"he": he, "lecun": lecun, "glorot": glorot}


def resolve(init: str | Initializer) -> Initializer:
    """Turn ``"he"``, ``"lecun"``, ``"glorot"`` or a callable into an initializer function."""
    if callable(init):
        return init
    if isinstance(init, str) and init.lower() in _BY_NAME:
        return _BY_NAME[init.lower()]
    raise ValueError(f"init must be one of {sorted(_BY_NAME)} or a callable, got {init!r}")
