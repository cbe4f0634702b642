"""Losses with hand-written gradients: softmax cross-entropy, MSE and the seed's softmax-MSE.

Each loss is a `Loss` value (not a factory): pass ``nj.cross_entropy``, ``nj.mse`` or
``nj.softmax_mse``; the string below each definition gives its exact formula.

A `Loss` maps model outputs ``(batch, classes)`` and targets — integer labels ``(batch,)`` or
one-hot / real-valued ``(batch, classes)`` — to a scalar, and gives ``∂value/∂outputs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Loss", "cross_entropy", "mse", "softmax_mse"]


class Loss(NamedTuple):
    """A loss: ``value(outputs, targets) -> scalar`` and ``backward(...) -> ∂value/∂outputs``.

    ``classification``: the loss reads its outputs as class scores (`cross_entropy`,
    `softmax_mse`), so `evaluate` reports accuracy and a confusion matrix even for one-hot float
    targets. A loss without it (`mse`) is a regression loss on float targets; integer labels
    still mean classification (see `nnrs_jax.data_checks.task`). Set it on a custom
    classification loss: ``Loss(value, backward, "focal", classification=True)``.
    """

    value: Callable[[jax.Array, jax.Array], jax.Array]
    backward: Callable[[jax.Array, jax.Array], jax.Array]
    name: str = "loss"
    classification: bool = False


def _documented(loss: Loss, doc: str) -> Loss:
    """``loss`` as an instance of its own subclass of `Loss` whose docstring is ``doc``.

    ``help(nj.mse)`` and the API reference then show the loss's own formula, not `Loss`'s.
    Equality is unchanged: a `Loss` compares as the tuple of its fields.
    """
    kind = type(loss.name, (Loss,), {"__doc__": doc, "__slots__": (), "__module__": __name__})
    return kind(*loss)


def _dense_targets(name: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Validate shapes and dtypes at trace time; return targets as ``(batch, classes)`` floats.

    A wrong type or dtype raises `TypeError`, a wrong shape `ValueError`.
    """
    if not (hasattr(outputs, "dtype") and hasattr(outputs, "shape")):
        raise TypeError(f"{name}: outputs must be an array, got {type(outputs).__name__}")
    if not jnp.issubdtype(outputs.dtype, jnp.floating):
        raise TypeError(f"{name}: outputs must have a floating dtype, got {outputs.dtype}")
    if outputs.ndim != 2:
        raise ValueError(
            f"{name}: outputs must have shape (batch, classes), got {tuple(outputs.shape)}"
        )
    batch, classes = outputs.shape
    if not (hasattr(targets, "dtype") and hasattr(targets, "shape")):
        raise TypeError(f"{name}: targets must be an array, got {type(targets).__name__}")
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != (batch,):
            raise ValueError(
                f"{name}: integer labels must have shape ({batch},) to match outputs "
                f"{outputs.shape}, got {targets.shape}"
            )
        return jax.nn.one_hot(targets, classes, dtype=outputs.dtype)
    if targets.shape != outputs.shape:
        raise ValueError(
            f"{name}: targets must be integer labels ({batch},) or an array of the outputs' "
            f"shape {outputs.shape}, got {targets.shape} {targets.dtype}"
        )
    return targets.astype(outputs.dtype)


def _ce_value(logits: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("cross_entropy", logits, targets)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(t * log_p) / logits.shape[0]


def _ce_backward(logits: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("cross_entropy", logits, targets)
    # Σ_c t_c = 1 for labels and one-hot; for soft targets the general form keeps it exact.
    p = jax.nn.softmax(logits, axis=-1)
    return (p * jnp.sum(t, axis=-1, keepdims=True) - t) / logits.shape[0]


cross_entropy = _documented(
    Loss(_ce_value, _ce_backward, "cross_entropy", classification=True),
    """Softmax cross-entropy on logits ``z`` ``(batch, classes)``, mean over the batch:

    value = −(1/B)·Σ_b Σ_c t_bc·log softmax(z_b)_c
    ∂value/∂z = (softmax(z)·Σ_c t_c − t) / B        (= (softmax(z) − t)/B for labels / one-hot)

``log softmax`` is computed as ``z − max z − log Σ e^{z − max z}``, finite for logits of ±1e4.
Targets: integer labels ``(batch,)`` or one-hot / soft ``(batch, classes)``.

Note: the seed (nn-rs) printed a value divided by ``batch × classes`` but used the gradient of
the batch mean; ours is the standard mean over the batch for both.
""",
)


def _mse_value(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("mse", outputs, targets)
    return jnp.mean((outputs - t) ** 2)


def _mse_backward(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("mse", outputs, targets)
    return 2 * (outputs - t) / outputs.size


mse = _documented(
    Loss(_mse_value, _mse_backward, "mse"),
    """Mean squared error over all elements: ``value = (1/(B·C))·Σ (y − t)²``,
``∂value/∂y = 2·(y − t)/(B·C)``. Integer labels are one-hot encoded.
""",
)


def _smse_value(logits: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("softmax_mse", logits, targets)
    return jnp.mean((jax.nn.softmax(logits, axis=-1) - t) ** 2)


def _smse_backward(logits: jax.Array, targets: jax.Array) -> jax.Array:
    t = _dense_targets("softmax_mse", logits, targets)
    p = jax.nn.softmax(logits, axis=-1)
    dp = 2 * (p - t) / logits.size
    return p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))


softmax_mse = _documented(
    Loss(_smse_value, _smse_backward, "softmax_mse", classification=True),
    """The seed's MSE variant: softmax of the logits, then mean squared error against the one-hot
targets. ``value = (1/(B·C))·Σ (softmax(z) − t)²``; with ``d = 2·(p − t)/(B·C)`` and
``p = softmax(z)``, ``∂value/∂z = p ⊙ (d − Σ_c d_c·p_c)``.
""",
)
