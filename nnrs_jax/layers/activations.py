"""Parameter-free activation layers. Each is a `Layer` whose params are ``()``.

Every activation acts element-wise on ``x`` of any shape except `softmax`, which normalises the
last axis. Backward is ``dx = dy ⊙ f'(x)`` (softmax: ``dx = s ⊙ (dy − Σ dy⊙s)``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_float
from nnrs_jax.layers._checks import check_same_shape, floating_input
from nnrs_jax.layers.base import Layer, layer_factory, no_params

__all__ = ["elu", "leaky_relu", "relu", "selu", "sigmoid", "softmax", "tanh"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

ArrayFn = Callable[[jax.Array], jax.Array]


def _elementwise(name: str, f: ArrayFn, df: ArrayFn) -> Layer:
    """A layer ``y = f(x)`` with backward ``dx = dy ⊙ df(x)``."""

    def apply(params: tuple[()], x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        return f(x)

    def backward(params: tuple[()], x: jax.Array, grad_y: jax.Array) -> tuple[tuple[()], jax.Array]:
        x = floating_input(name, x)
        check_same_shape(name, x, grad_y)
        return (), grad_y * df(x)

    return Layer(no_params, apply, backward, name=name)


@layer_factory
def relu() -> Layer:
    """ReLU: ``y = max(x, 0)``; ``y' = 1 if x > 0 else 0``. Reference: Nair & Hinton 2010."""
    return _elementwise("relu", lambda x: jnp.maximum(x, 0), lambda x: (x > 0).astype(x.dtype))


@layer_factory
def leaky_relu(alpha: float = 0.01) -> Layer:
    """Leaky ReLU: ``y = x if x > 0 else α·x``; ``y' = 1 if x > 0 else α``.

    Reference: Maas et al. 2013, "Rectifier Nonlinearities Improve Neural Network Acoustic Models".
    """
    a = check_float("leaky_relu", "alpha", alpha, low=0.0)
    return _elementwise(
        f"leaky_relu({a})",
        lambda x: jnp.where(x > 0, x, a * x),
        lambda x: jnp.where(x > 0, jnp.ones_like(x), jnp.full_like(x, a)),
    )


def _elu_parts(alpha: float, scale: float) -> tuple[ArrayFn, ArrayFn]:
    # exp is taken of min(x, 0) so that large positive inputs never overflow in the unused branch.
    def f(x: jax.Array) -> jax.Array:
        return scale * jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))

    def df(x: jax.Array) -> jax.Array:
        return scale * jnp.where(x > 0, jnp.ones_like(x), alpha * jnp.exp(jnp.minimum(x, 0)))

    return f, df


@layer_factory
def elu(alpha: float = 1.0) -> Layer:
    """ELU: ``y = x if x > 0 else α·(eˣ − 1)``; ``y' = 1 if x > 0 else α·eˣ``.

    Reference: Clevert et al. 2016, "Fast and Accurate Deep Network Learning by ELUs".
    """
    a = check_float("elu", "alpha", alpha, low=0.0)
    return _elementwise(f"elu({a})", *_elu_parts(a, 1.0))


@layer_factory
def selu() -> Layer:
    """SELU: ``y = λ·(x if x > 0 else α·(eˣ − 1))``; ``y' = λ if x > 0 else λ·α·eˣ``.

    ``λ ≈ 1.0507``, ``α ≈ 1.6733`` (the self-normalising constants). Pair with LeCun init.
    Reference: Klambauer et al. 2017, "Self-Normalizing Neural Networks".
    """
    return _elementwise("selu", *_elu_parts(SELU_ALPHA, SELU_SCALE))


@layer_factory
def tanh() -> Layer:
    """Hyperbolic tangent: ``y = tanh(x)``; ``y' = 1 − tanh²(x)``."""
    return _elementwise("tanh", jnp.tanh, lambda x: 1 - jnp.tanh(x) ** 2)


@layer_factory
def sigmoid() -> Layer:
    """Logistic sigmoid: ``y = σ(x) = 1 / (1 + e⁻ˣ)``; ``y' = σ(x)·(1 − σ(x))``."""

    def df(x: jax.Array) -> jax.Array:
        s = jax.nn.sigmoid(x)
        return s * (1 - s)

    return _elementwise("sigmoid", jax.nn.sigmoid, df)


@layer_factory
def softmax() -> Layer:
    """Softmax over the last axis: ``sᵢ = e^{xᵢ} / Σⱼ e^{xⱼ}`` (max-shifted, stable).

    Backward (Jacobian ``diag(s) − s·sᵀ`` applied to ``dy``): ``dx = s ⊙ (dy − Σᵢ dyᵢ·sᵢ)``.
    For classification prefer a linear output with `nnrs_jax.cross_entropy`, which fuses the
    softmax and is stable for extreme logits.
    """
    name = "softmax"

    def apply(params: tuple[()], x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        return jax.nn.softmax(x, axis=-1)

    def backward(params: tuple[()], x: jax.Array, grad_y: jax.Array) -> tuple[tuple[()], jax.Array]:
        x = floating_input(name, x)
        check_same_shape(name, x, grad_y)
        s = jax.nn.softmax(x, axis=-1)
        return (), s * (grad_y - jnp.sum(grad_y * s, axis=-1, keepdims=True))

    return Layer(no_params, apply, backward, name=name)
