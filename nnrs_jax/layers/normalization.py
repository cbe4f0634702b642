"""Batch normalisation: a context layer with running statistics in its non-trainable state."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nnrs_jax._validate import check_float, check_int, check_probability
from nnrs_jax.layers._checks import check_floating, check_train
from nnrs_jax.layers.base import Layer, PRNGKey, layer_factory

__all__ = ["BatchNormParams", "BatchNormState", "batch_norm"]


class BatchNormParams(NamedTuple):
    """Parameters of `batch_norm`: ``scale`` γ ``(features,)`` and ``bias`` β ``(features,)``."""

    scale: jax.Array
    bias: jax.Array


class BatchNormState(NamedTuple):
    """State of `batch_norm`: running ``mean`` and ``var`` ``(features,)``, not trained."""

    mean: jax.Array
    var: jax.Array


@layer_factory
def batch_norm(
    features: int,
    momentum: float = 0.9,
    eps: float = 1e-5,
    *,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Batch normalisation over every axis but the last (the features).

    ``x`` is ``(batch, ..., features)``: ``(batch, features)`` after a `dense` layer,
    ``(batch, height, width, channels)`` after a convolution. Statistics are per feature, over
    the ``N`` elements of the other axes.

    Training (``train=True``) uses the batch statistics, ``μ = mean(x)`` and the *biased*
    ``σ² = mean((x − μ)²)``::

        x̂ = (x − μ) / √(σ² + eps)
        y = γ·x̂ + β

        dβ = Σ dy
        dγ = Σ dy·x̂
        dx = γ/√(σ² + eps) · (dy − mean(dy) − x̂·mean(dy·x̂))

    (``dx`` carries the gradient through ``μ`` and ``σ²`` too; sums and means run over the
    ``N`` elements of each feature). The returned state moves towards the batch statistics::

        mean ← momentum·mean + (1 − momentum)·μ
        var  ← momentum·var  + (1 − momentum)·σ²·N/(N − 1)

    The running variance takes the *unbiased* batch variance (as PyTorch does; Keras and Flax
    take the biased one): it estimates the variance of the whole data, which inference uses.
    Training therefore needs ``N >= 2``.

    Inference (``train=False``) uses the running statistics, a fixed per-feature affine map,
    and returns the state unchanged::

        x̂ = (x − mean) / √(var + eps),  y = γ·x̂ + β
        dβ = Σ dy,  dγ = Σ dy·x̂,  dx = dy·γ/√(var + eps)

    Params `BatchNormParams` (γ = 1, β = 0 at init); state `BatchNormState` (mean 0, var 1 at
    init, from ``init_state()``). The layer always needs its state: pass
    ``state=model.init_state()`` or the state that `nnrs_jax.fit` returns. ``momentum`` is the
    weight of the old running value (Keras' convention; PyTorch's ``momentum`` is ``1 −`` it).
    Reference: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training
    by Reducing Internal Covariate Shift".

    Args:
        features: size of the last axis of ``x``.
        momentum: weight of the old running statistics, ``0 <= momentum < 1``.
        eps: added to the variance before the square root, ``> 0``.
        dtype: dtype of the params and the state, float32 by default (use the input's).

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> layer = nj.batch_norm(2, momentum=0.5)
        >>> params, state = layer.init(jax.random.key(0)), layer.init_state()
        >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> y, new_state = nj.forward(layer, params, x, state=state, train=True)
        >>> y.round(3).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> new_state.mean.tolist(), new_state.var.tolist()  # 0.5·(0, 1) + 0.5·(μ, σ²·N/(N−1))
        ([1.0, 10.0], [1.5, 100.5])
    """
    features = check_int("batch_norm", "features", features, low=1)
    momentum = check_probability("batch_norm", "momentum", momentum)
    eps = check_float("batch_norm", "eps", eps, low=0.0, low_open=True)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"batch_norm: dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    name = f"batch_norm({features})"

    def init(key: PRNGKey) -> BatchNormParams:
        del key
        return BatchNormParams(jnp.ones((features,), dtype), jnp.zeros((features,), dtype))

    def init_state() -> BatchNormState:
        return BatchNormState(jnp.zeros((features,), dtype), jnp.ones((features,), dtype))

    def check(x: jax.Array, state: Any, train: Any) -> None:
        """Validate ``x``, ``state`` and ``train`` at trace time."""
        check_floating(name, x)
        if x.ndim < 2 or x.shape[-1] != features:
            raise ValueError(
                f"{name}: x must have shape (batch, ..., {features}) with {features} "
                f"features on the last axis, got {tuple(x.shape)}"
            )
        check_train(name, train)
        if state is None:
            raise TypeError(
                f"{name}: needs its state (running mean and variance); pass "
                "state=model.init_state(), or the state returned by fit"
            )
        if not isinstance(state, BatchNormState):
            raise TypeError(
                f"{name}: state must be a BatchNormState(mean, var) from init_state(), "
                f"got {type(state).__name__}"
            )
        for field, value in zip(state._fields, state):
            if tuple(getattr(value, "shape", ())) != (features,):
                got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise ValueError(f"{name}: state.{field} must have shape ({features},), got {got}")

    def feature_shape(x: jax.Array) -> tuple[int, ...]:
        """The shape a per-feature vector takes to broadcast against ``x``."""
        return (1,) * (x.ndim - 1) + (features,)

    def normalise(params: BatchNormParams, x: jax.Array, state: BatchNormState, train: bool):
        """``(x̂, γ/√(var + eps), (μ, σ²))``, the batch statistics ``None`` in inference.

        Per-feature arrays come in ``feature_shape(x)``, ready to broadcast against ``x``.
        """
        shape = feature_shape(x)
        if train:
            axes = tuple(range(x.ndim - 1))
            mu = jnp.mean(x, axis=axes, keepdims=True)
            centred = x - mu
            var = jnp.mean(centred * centred, axis=axes, keepdims=True)
        else:
            mu, var = state.mean.reshape(shape), state.var.reshape(shape)
            centred = x - mu
        inv_std = lax.rsqrt(var + eps)
        x_hat = centred * inv_std
        gain = params.scale.reshape(shape) * inv_std
        return x_hat, gain, (mu, var) if train else None

    def forward_fn(params, x, *, state, key, train):
        del key
        check(x, state, train)
        n = math.prod(x.shape[:-1])
        if train and n < 2:
            raise ValueError(
                f"{name}: training needs at least 2 values per feature to estimate a variance, "
                f"got x of shape {tuple(x.shape)}"
            )
        x_hat, _, batch_stats = normalise(params, x, state, train)
        shape = feature_shape(x)
        y = params.scale.reshape(shape) * x_hat + params.bias.reshape(shape)
        if not train:
            return y, state
        mu, var = (s.reshape(features) for s in batch_stats)
        new_mean = momentum * state.mean + (1.0 - momentum) * mu
        new_var = momentum * state.var + (1.0 - momentum) * var * (n / (n - 1))
        # Same dtype as before, so the state is a stable carry for lax.scan.
        return y, BatchNormState(new_mean.astype(state.mean.dtype), new_var.astype(state.var.dtype))

    def backward_fn(params, x, grad_y, *, state, key, train):
        del key
        check(x, state, train)
        if tuple(grad_y.shape) != tuple(x.shape):
            raise ValueError(
                f"{name}: grad_y must have the shape of x {tuple(x.shape)}, "
                f"got {tuple(grad_y.shape)}"
            )
        x_hat, gain, _ = normalise(params, x, state, train)
        axes = tuple(range(x.ndim - 1))
        grad_bias = jnp.sum(grad_y, axis=axes)
        grad_scale = jnp.sum(grad_y * x_hat, axis=axes)
        if not train:
            return BatchNormParams(grad_scale, grad_bias), grad_y * gain
        n = math.prod(x.shape[:-1])
        shape = feature_shape(x)
        mean_dy = (grad_bias / n).reshape(shape)
        mean_dy_x_hat = (grad_scale / n).reshape(shape)
        grad_x = gain * (grad_y - mean_dy - x_hat * mean_dy_x_hat)
        return BatchNormParams(grad_scale, grad_bias), grad_x

    return Layer.context(init, forward_fn, backward_fn, name=name, init_state=init_state)
