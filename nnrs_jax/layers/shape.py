"""Shape layers: `flatten` and `reshape`. The batch axis is always kept."""

from __future__ import annotations

import math

import jax

from nnrs_jax._validate import check_int
from nnrs_jax.layers._checks import check_grad_shape, floating_input
from nnrs_jax.layers.base import Layer, layer_factory, no_params

__all__ = ["flatten", "reshape"]


def _reshaper(name: str, target) -> Layer:
    """``y = x.reshape(batch, *target(x.shape[1:]))``, backward ``dx = dy.reshape(x.shape)``."""

    def apply(params: tuple[()], x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        if len(x.shape) < 1:
            raise ValueError(f"{name}: x must have a batch axis, shape (batch, ...), got ()")
        return x.reshape(x.shape[0], *target(tuple(x.shape[1:])))

    def backward(params: tuple[()], x: jax.Array, grad_y: jax.Array) -> tuple[tuple[()], jax.Array]:
        x = floating_input(name, x)
        check_grad_shape(name, grad_y, tuple(apply(params, x).shape))
        return (), grad_y.reshape(x.shape)

    return Layer(no_params, apply, backward, name=name)


@layer_factory
def flatten() -> Layer:
    """Flatten each example: ``(batch, d₁, …, dₖ)`` → ``(batch, d₁·…·dₖ)``, row-major (C order).

    Backward: ``dx = dy.reshape(x.shape)``. Put it between convolutional and `dense` layers;
    `nnrs_jax.output_shape` gives the size ``dense`` then needs.

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> nj.flatten().apply((), jnp.zeros((2, 5, 5, 64))).shape
        (2, 1600)
    """
    return _reshaper("flatten", lambda shape: (math.prod(shape),))


@layer_factory
def reshape(shape: tuple[int, ...]) -> Layer:
    """Reshape each example to ``shape``: ``(batch, …)`` → ``(batch, *shape)``, row-major.

    One entry of ``shape`` may be ``-1``: it is inferred from the example's size. Backward:
    ``dx = dy.reshape(x.shape)``.

    Args:
        shape: the shape of one example, a tuple of positive ints with at most one ``-1``.

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> nj.reshape((28, 28, 1)).apply((), jnp.zeros((3, 784))).shape
        (3, 28, 28, 1)
    """
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"reshape: shape must be a tuple of ints, got {type(shape).__name__}")
    dims = tuple(check_int("reshape", "shape", d, low=-1) for d in shape)
    if 0 in dims or dims.count(-1) > 1:
        raise ValueError(
            f"reshape: shape must hold positive ints and at most one -1, got {tuple(shape)!r}"
        )
    name = f"reshape({dims})"
    known = math.prod(d for d in dims if d != -1)

    def target(example: tuple[int, ...]) -> tuple[int, ...]:
        size = math.prod(example)
        fits = size % known == 0 if -1 in dims else size == known
        if not fits:
            raise ValueError(
                f"{name}: cannot reshape an example of shape {example} ({size} values) to "
                f"{dims} ({'a multiple of ' if -1 in dims else ''}{known} values)"
            )
        return tuple(size // known if d == -1 else d for d in dims)

    return _reshaper(name, target)
