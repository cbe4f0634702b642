"""Inverted dropout: a stochastic context layer whose randomness comes from the caller's key."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_probability
from nnrs_jax.layers._checks import check_floating, check_key, check_same_shape, check_train
from nnrs_jax.layers._random import random_bits
from nnrs_jax.layers.base import Layer, layer_factory, no_params

__all__ = ["dropout"]


@layer_factory
def dropout(rate: float) -> Layer:
    """Inverted dropout: zero each element with probability ``rate``, rescale the rest.

    Training (``train=True``), with a mask ``m`` drawn from ``key``, ``mᵢ ~ Bernoulli(1 − rate)``
    independently for every element of ``x`` (any shape)::

        y  = x ⊙ m / (1 − rate)
        dx = dy ⊙ m / (1 − rate)

    so ``E[y] = x`` and inference needs no rescaling: with ``train=False`` the layer is the
    identity (``y = x``, ``dx = dy``). ``backward`` regenerates the forward's mask from the same
    ``key``; nothing is stored between the two calls. The mask is drawn as 32 random bits per
    element compared with ``round(rate·2³²)``, so a key gives the same mask for float32 and
    float64 inputs, with or without ``jax_enable_x64``. The bits are those of
    ``jax.random.bits(key, x.shape, jnp.uint32)``, computed as one fused pass for JAX's default
    Threefry keys (`nnrs_jax.layers._random`): on CPU, JAX's own lowering of the hash costs
    about 5× more, a fifth of a small CNN's training step.

    Params ``()``, state ``()``. Training with ``rate > 0`` needs a key (`serial` hands each layer
    its own, ``split(key, n)[i]``); a fresh key per step gives fresh masks.
    Reference: Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting".

    Args:
        rate: the probability of dropping an element, ``0 <= rate < 1``.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> layer = nj.dropout(0.5)
        >>> x = jnp.ones((2, 4))
        >>> y, _ = nj.forward(layer, (), x, key=jax.random.key(0), train=True)
        >>> set(y.ravel().tolist()) <= {0.0, 2.0}  # dropped, or kept and scaled by 1/(1 − 0.5)
        True
        >>> bool((layer.apply((), x) == x).all())  # inference: the identity
        True
    """
    rate = check_probability("dropout", "rate", rate)
    name = f"dropout({rate:g})"
    scale = 1.0 / (1.0 - rate)
    # P(bits < threshold) = threshold / 2³² ≈ rate; the clamp keeps it a uint32 when rate ≈ 1.
    threshold = np.uint32(min(round(rate * 2.0**32), 2**32 - 1))

    def multiplier(x: jax.Array, key: Any) -> jax.Array:
        """``m / (1 − rate)`` in ``x``'s dtype, from ``key``."""
        check_key(name, key)
        keep = random_bits(key, x.shape) >= threshold
        return jnp.where(keep, jnp.asarray(scale, x.dtype), jnp.zeros((), x.dtype))

    def active(x: jax.Array, train: Any) -> bool:
        check_floating(name, x)
        check_train(name, train)
        return bool(train) and rate > 0.0

    def forward_fn(params, x, *, state, key, train):
        del params, state
        if not active(x, train):
            return x, ()
        return x * multiplier(x, key), ()

    def backward_fn(params, x, grad_y, *, state, key, train):
        del params, state
        on = active(x, train)
        check_same_shape(name, x, grad_y)
        if not on:
            return (), grad_y
        return (), grad_y * multiplier(x, key)

    return Layer.context(no_params, forward_fn, backward_fn, name=name)
