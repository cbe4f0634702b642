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

    Examples:
        >>> import jax
        >>> from nnrs_jax.initializers import he
        >>> w = he(jax.random.key(0), (784, 64))
        >>> w.shape, w.dtype, round(float(w.var()) * 784 / 2, 1)
        ((784, 64), dtype('float32'), 1.0)
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


def resolve(init: str | Initializer, *, caller: str = "resolve") -> Initializer:
    """Turn ``"he"``, ``"lecun"``, ``"glorot"`` (any case) or a callable into an initializer.

    Args:
        init: a name, or a function ``init(key, shape, dtype) -> array``.
        caller: the factory named in error messages, e.g. ``"dense"``.

    Raises:
        TypeError: ``init`` is neither a string nor a callable.
        ValueError: ``init`` is a string but not one of the names.

    Examples:
        >>> from nnrs_jax import initializers
        >>> initializers.resolve("He") is initializers.he
        True
    """
    if callable(init):
        return init
    names = tuple(sorted(_BY_NAME))
    if not isinstance(init, str):
        raise TypeError(
            f"{caller}: init must be one of {names} or a callable, got {init!r} "
            f"({type(init).__name__})"
        )
    if init.lower() not in _BY_NAME:
        raise ValueError(f"{caller}: init must be one of {names} or a callable, got {init!r}")
    return _BY_NAME[init.lower()]
