"""Transformations that bound the gradient: `clip` (per entry) and `clip_by_global_norm`.

Each is an `Optimizer` with an empty state, meant to be composed by `chain`, usually first. ``g``
is the incoming tree; both keep its structure, shapes and dtypes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax.optim.base import (
    Optimizer,
    Params,
    Updates,
    check_gradient_tree,
    check_positive,
    transformation,
)

__all__ = ["ClipByGlobalNormState", "ClipState", "clip", "clip_by_global_norm"]


class ClipState(NamedTuple):
    """State of `clip`: empty."""


def clip(max_delta: float) -> Optimizer:
    r"""Clip every entry to ``[-max_delta, max_delta]``.

    $$
    u = \min(\max(g, -\delta), \delta)
    $$

    Reference: Mikolov 2012, "Statistical language models based on neural networks", PhD
    thesis, Brno University of Technology, section 3.2.

    Args:
        max_delta: ``δ``, a finite float > 0.

    Returns:
        An `Optimizer` whose state is `ClipState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import clip
        >>> opt = clip(1.0)
        >>> g = {"x": jnp.array([0.5, -3.0], jnp.float32)}
        >>> opt.update(g, opt.init(g))[0]["x"]
        Array([ 0.5, -1. ], dtype=float32)
    """
    max_delta = check_positive("clip", "max_delta", max_delta)
    return transformation("clip", ClipState, _clip_update, max_delta)


def _clip_update(
    max_delta: float, grads: Updates, state: ClipState, params: Params | None = None
) -> tuple[Updates, ClipState]:
    check_gradient_tree("clip", grads, None, params)
    return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), grads), state


class ClipByGlobalNormState(NamedTuple):
    """State of `clip_by_global_norm`: empty."""


def clip_by_global_norm(max_norm: float) -> Optimizer:
    r"""Scale the whole tree down so that its global L2 norm is at most ``max_norm``.

    $$
    \|g\| = \sqrt{\textstyle\sum_{\text{leaves}} \sum g^2}, \qquad
    u = g \cdot \frac{c}{\max(\|g\|, c)}
    $$

    A tree whose norm is at most ``c`` passes unchanged (the factor is exactly 1); otherwise
    every leaf is scaled by the same factor, so the direction is kept. The norm is accumulated
    in the widest dtype of the leaves (at least float32). Reference: Pascanu, Mikolov & Bengio
    2013, "On the difficulty of training recurrent neural networks", Algorithm 1.

    Args:
        max_norm: ``c``, a finite float > 0.

    Returns:
        An `Optimizer` whose state is `ClipByGlobalNormState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import clip_by_global_norm
        >>> opt = clip_by_global_norm(1.0)
        >>> g = {"a": jnp.array([3.0], jnp.float32), "b": jnp.array([4.0], jnp.float32)}
        >>> updates, _ = opt.update(g, opt.init(g))  # ‖g‖ = 5
        >>> updates["a"], updates["b"]
        (Array([0.6], dtype=float32), Array([0.8], dtype=float32))
    """
    name = "clip_by_global_norm"
    max_norm = check_positive(name, "max_norm", max_norm)
    return transformation(name, ClipByGlobalNormState, _global_norm_update, max_norm)


def _global_norm_update(
    max_norm: float, grads: Updates, state: ClipByGlobalNormState, params: Params | None = None
) -> tuple[Updates, ClipByGlobalNormState]:
    check_gradient_tree("clip_by_global_norm", grads, None, params)
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return grads, state
    wide = max((jnp.result_type(g) for g in leaves), key=lambda d: d.itemsize)
    if wide.itemsize < 4:
        wide = jnp.dtype(jnp.float32)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(wide))) for g in leaves))
    factor = max_norm / jnp.maximum(norm, max_norm)
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), grads), state
