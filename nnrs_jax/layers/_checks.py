"""Trace-time input checks shared by the layers: they raise before XLA sees a bad shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_int


def floating_input(name: str, x: jax.Array, arg: str = "x") -> jax.Array:
    """``x`` itself, after `check_floating`."""
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


def check_train(name: str, train: object) -> None:
    """Raise unless ``train`` is a Python (or NumPy) bool: it picks a code path while tracing."""
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(
            f"{name}: train must be a Python bool (it is static under jit), "
            f"got {type(train).__name__}"
        )


def check_key(name: str, key: object) -> None:
    """Raise unless ``key`` is a PRNG key: a typed `jax.random.key` or a legacy uint32 key."""
    if key is None:
        raise TypeError(f"{name}: training needs a PRNG key; pass key=jax.random.key(...)")
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    legacy = dtype == jnp.uint32 and tuple(getattr(key, "shape", ()))[-1:] == (2,)
    if not (typed or legacy):
        got = type(key).__name__
        if dtype is not None:
            got += f" of dtype {dtype} and shape {tuple(getattr(key, 'shape', ()))}"
        raise TypeError(f"{name}: key must be a PRNG key from jax.random.key(seed), got {got}")


def pair(name: str, arg: str, value: object, *, low: int) -> tuple[int, int]:
    """An int ``n`` as ``(n, n)``, or a pair of ints, each ``>= low`` (kernel, stride, padding)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{name}: {arg} must be an int or a pair of ints, got {len(value)} values {value!r}"
            )
        first, second = (check_int(name, arg, v, low=low) for v in value)
        return first, second
    n = check_int(name, arg, value, low=low)
    return n, n


def check_image(name: str, x: jax.Array, *, channels: int | None = None, arg: str = "x") -> None:
    """Raise unless ``x`` is a floating NHWC batch ``(batch, height, width, channels)``."""
    check_floating(name, x, arg)
    want = f"(batch, height, width, {channels if channels is not None else 'channels'})"
    if len(x.shape) != 4:
        hint = (
            "; reshape flat images first, e.g. nj.reshape((28, 28, 1))" if len(x.shape) == 2 else ""
        )
        raise ValueError(
            f"{name}: {arg} must have shape {want} (NHWC, rank 4), got {tuple(x.shape)} "
            f"(rank {len(x.shape)}){hint}"
        )
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(
            f"{name}: {arg} must have shape {want}: expected {channels} channels, "
            f"got {x.shape[-1]} (shape {tuple(x.shape)})"
        )


def window_output_size(name: str, axis: str, size: int, window: int, stride: int, what: str) -> int:
    """Positions of a ``window`` sliding by ``stride`` over ``size``; raise if it does not fit."""
    if window > size:
        raise ValueError(
            f"{name}: the {what} {axis} {window} is larger than the input {axis} {size} "
            f"(after padding); expected an input {axis} >= {window}"
        )
    return (size - window) // stride + 1


def check_grad_shape(name: str, grad_y: jax.Array, shape: tuple[int, ...]) -> None:
    """Raise unless ``grad_y`` has ``shape``, the shape of the layer's output."""
    check_floating(name, grad_y, "grad_y")
    if tuple(grad_y.shape) != tuple(shape):
        raise ValueError(
            f"{name}: grad_y must have the shape of the output {tuple(shape)}, "
            f"got {tuple(grad_y.shape)}"
        )


def check_sequence(
    name: str, x: jax.Array, features: int | None = None, *, arg: str = "x", min_time: int = 1
) -> None:
    """Raise unless ``x`` is a floating ``(batch, time, features)`` array, ``time >= min_time``.

    ``features=None`` accepts any feature count. Free under ``jit`` (shapes and dtypes only).
    """
    check_floating(name, x, arg)
    shape = tuple(x.shape)
    want = f"(batch, time, {'features' if features is None else features})"
    if len(shape) != 3:
        raise ValueError(
            f"{name}: {arg} must have shape {want} (rank 3), got {shape} (rank {len(shape)})"
        )
    if features is not None and shape[2] != features:
        raise ValueError(
            f"{name}: {arg} must have shape {want}: expected {features} features, "
            f"got {shape[2]} (shape {shape})"
        )
    if shape[1] < min_time:
        raise ValueError(f"{name}: {arg} must hold at least one time step, got shape {shape}")
