"""The training objective: data loss plus the layers' penalties, and its hand-written gradient."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from nnrs_jax.layers.base import Layer, Params, PRNGKey, State, backward, check_model, forward
from nnrs_jax.losses import Loss

__all__ = ["check_grads", "loss_and_grad", "penalty"]


def penalty(model: Layer, params: Params) -> jax.Array | float:
    """Sum of every layer's regularization penalty, e.g. ``Σ_layers l1·Σ|W| + l2·ΣW²``."""
    return model.penalty(params)[0]


def value_grad_outputs(
    model: Layer,
    loss: Loss,
    params: Params,
    x: Any,
    targets: jax.Array,
    *,
    state: State = None,
    key: PRNGKey | None = None,
    train: bool = False,
) -> tuple[jax.Array, Params, jax.Array, State]:
    """`loss_and_grad` that also returns the outputs (for metrics) and the new model state."""
    outputs, new_state = forward(model, params, x, state=state, key=key, train=train)
    grad_outputs = loss.backward(outputs, targets)
    grads, _ = backward(model, params, x, grad_outputs, state=state, key=key, train=train)
    pen, pen_grads = model.penalty(params)
    total = loss.value(outputs, targets) + pen
    return total, jax.tree.map(jnp.add, grads, pen_grads), outputs, new_state


def loss_and_grad(
    model: Layer,
    loss: Loss,
    params: Params,
    x: jax.Array,
    targets: jax.Array,
    *,
    state: State = None,
    key: PRNGKey | None = None,
    train: bool = False,
) -> tuple[jax.Array, Params]:
    """Objective ``loss(model(x), targets) + penalty(params)`` and its gradient.

    The gradient comes only from the hand-written passes: ``loss.backward`` gives ``∂L/∂y``,
    ``model.backward`` carries it back through the layers, and each layer's penalty adds
    ``l1·sign(W) + 2·l2·W`` to its weights. No ``jax.grad`` is involved. ``state``, ``key``
    and ``train`` go to the model as in `nnrs_jax.forward` (``train=True`` for dropout masks
    and batch statistics, with the key and state that training would use).

    Returns:
        ``(total, grads)`` with ``grads`` of the same tree as ``params``.
    """
    model = check_model("loss_and_grad", model)
    total, grads, _, _ = value_grad_outputs(
        model, loss, params, x, targets, state=state, key=key, train=train
    )
    return total, grads


def check_grads(
    model: Layer,
    loss: Loss,
    params: Params,
    x: jax.Array,
    targets: jax.Array,
    *,
    state: State = None,
    key: PRNGKey | None = None,
    train: bool = False,
) -> float:
    """Max relative difference between `loss_and_grad` and ``jax.grad`` of the same objective.

    For each leaf, ``max|g_manual − g_autodiff| / max(max|g_autodiff|, √ε·G)`` where ``G`` is
    the largest gradient entry of the whole model and ``ε`` the dtype's machine epsilon: a
    norm-wise relative error that stays meaningful where entries are zero, and a leaf whose
    gradient is zero in theory (a bias right before `batch_norm` in training mode) is measured
    against that floor instead of its own rounding noise. The result is the largest over all
    leaves and the loss value itself. Expect ~1e-15 in float64 and ~1e-7 in float32.
    ``state``, ``key`` and ``train`` as in `loss_and_grad` (e.g. dropout with a fixed key, batch
    norm in training mode).
    """
    model = check_model("check_grads", model)

    def objective(p: Params) -> jax.Array:
        outputs, _ = forward(model, p, x, state=state, key=key, train=train)
        return loss.value(outputs, targets) + penalty(model, p)

    ref_value, ref_grads = jax.value_and_grad(objective)(params)
    value, grads = loss_and_grad(model, loss, params, x, targets, state=state, key=key, train=train)

    ref_leaves = jax.tree.leaves(ref_grads)
    largest = max((float(jnp.max(jnp.abs(g))) for g in ref_leaves if g.size), default=0.0)

    def rel(a: jax.Array, b: jax.Array, floor: float) -> float:
        finfo = jnp.finfo(b.dtype)
        scale = jnp.maximum(jnp.max(jnp.abs(b)), max(floor * float(finfo.eps) ** 0.5, finfo.tiny))
        return float(jnp.max(jnp.abs(a - b)) / scale)

    diffs = [rel(a, b, largest) for a, b in zip(jax.tree.leaves(grads), ref_leaves) if b.size]
    return max([rel(jnp.asarray(value), jnp.asarray(ref_value), 0.0), *diffs])
