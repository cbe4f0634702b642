"""Trace-time input checks shared by the layers: they raise before XLA sees a bad shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nnrs_jax.layers.base import Pretransposed


def floating_input(name: str, x: jax.Array | Pretransposed, arg: str = "x") -> jax.Array:
    """``x`` as a plain array (unwrapping `Pretransposed`), after `check_floating`."""
    x = x.x if isinstance(x, Pretransposed) else x
    check_floating(name, x, arg)
    return x


def check_floating(name: str, x: jax.Array, arg: str = "x") -> None:
    """Raise unless ``x`` is an array with a floating dtype. Free under ``jit``."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not hasattr(x, "shape"):
        raise TypeError(f"{name}: {arg} must be an array, got {type(x).__name__}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: {arg} must have a floating dtype, got {dtype}")


def check_input(name: str, x: jax.Array, *, features: int | None = None, arg: str = "x") -> None:
    """Raise if ``x`` is not a floating ``(batch, features)`` array.

    Runs on shapes and dtypes only, so it is free under ``jit``.
    """
    check_floating(name, x, arg)
    shape = x.shape
    if len(shape) != 2:
        want = f"(batch, {features})" if features is not None else "(batch, features)"
        raise ValueError(f"{name}: {arg} must have shape {want}, got {tuple(shape)}")
    if features is not None and shape[1] != features:
        raise ValueError(
            f"{name}: {arg} must have shape (batch, {features}), got {tuple(shape)}: "
            f"expected {features} features, got {shape[1]}"
        )


def check_same_shape(name: str, x: jax.Array, grad_y: jax.Array) -> None:
    """Raise unless an element-wise layer's ``grad_y`` has the shape of its input ``x``."""
    if tuple(grad_y.shape) != tuple(x.shape):
        raise ValueError(
            f"{name}: grad_y must have the shape of x {tuple(x.shape)}, got {tuple(grad_y.shape)}"
        )
