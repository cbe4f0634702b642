"""The `Layer` type: a NamedTuple of pure functions, stax-style, with a hand-written backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any  # a pytree of arrays
PRNGKey = jax.Array


def no_penalty(params: Params) -> tuple[jax.Array | float, Params]:
    """Zero penalty and an all-zero gradient with the structure of `params`.

    The value is a Python ``0.0`` (weakly typed) so that it adds to float32 and float64 alike.
    """
    return 0.0, jax.tree.map(jnp.zeros_like, params)


class Pretransposed(NamedTuple):
    """A model input ``x`` ``(batch, features)`` with a row-major copy ``x_t`` of ``xᵀ``.

    When one ``x`` feeds every step (full-batch training), a first `dense` layer computes
    ``dW = xᵀ·dy`` as the plain product ``x_t·dy`` instead of a product with a transposed
    operand, which CPUs run about 1.7× faster. (Keeping only ``x_t`` would save the memory of
    ``x`` but makes XLA run the forward ``x_tᵀ·W`` as the slow transposed product instead.)
    Every layer accepts it wherever it accepts ``x``; only `dense` reads ``x_t``.
    `nnrs_jax.fit` uses it for full-batch training.
    """

    x: jax.Array
    x_t: jax.Array

    @classmethod
    def of(cls, x: jax.Array) -> Pretransposed:
        """Wrap ``x`` with a materialised transpose (one copy, made once)."""
        return cls(x, jax.jit(lambda a: a.T)(x))


class Layer(NamedTuple):
    """A layer: four pure functions, composable with `serial`.

    Attributes:
        init: ``init(key) -> params``; parameter-free layers return ``()``.
        apply: ``apply(params, x) -> y`` on a batch ``x`` of shape ``(batch, ...)``.
        backward: ``backward(params, x, grad_y) -> (grad_params, grad_x)``, the vector-Jacobian
            product of ``apply`` at ``x``; ``grad_params`` has exactly the tree of ``params``.
        penalty: ``penalty(params) -> (value, grad_params)``, the layer's regularization term and
            its gradient (zero for layers without a regularizer).
        name: used in error messages, e.g. ``"dense(784, 64)"``.
    """

    init: Callable[[PRNGKey], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    backward: Callable[[Params, jax.Array, jax.Array], tuple[Params, jax.Array]]
    penalty: Callable[[Params], tuple[jax.Array | float, Params]] = no_penalty
    name: str = "layer"
