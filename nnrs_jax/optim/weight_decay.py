"""Decoupled weight decay: `add_decayed_weights`, and the mask `matrices_only`.

`add_decayed_weights` is an `Optimizer` with an empty state, meant to be composed by `chain`
between an adaptive scaling and `scale_by_learning_rate`, as `adamw` does. A mask (a pytree of
bools with the structure of the params, or a function of the params that returns one) says which
leaves decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_float
from nnrs_jax.optim.base import (
    Optimizer,
    Params,
    Updates,
    brief,
    check_gradient_tree,
    transformation,
)

__all__ = ["AddDecayedWeightsState", "add_decayed_weights", "matrices_only"]

Mask = Any  # a pytree of bools with the structure of the params
MaskFn = Callable[[Params], Mask]


class AddDecayedWeightsState(NamedTuple):
    """State of `add_decayed_weights`: empty."""


def matrices_only(params: Params) -> Mask:
    """The weight-decay mask that exempts vectors and scalars: ``True`` where ``ndim >= 2``.

    Pass it as ``mask`` to `add_decayed_weights` or `adamw` to decay weight matrices and
    kernels but not biases or normalisation scales.

    Args:
        params: a pytree of arrays.

    Returns:
        A pytree of Python bools with the structure of ``params``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax import DenseParams
        >>> from nnrs_jax.optim import matrices_only
        >>> matrices_only([DenseParams(w=jnp.ones((3, 2)), b=jnp.ones(2))])
        [DenseParams(w=True, b=False)]
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def add_decayed_weights(rate: float, mask: Mask | MaskFn | None = None) -> Optimizer:
    r"""Add ``rate·params`` to the updates: decoupled weight decay.

    $$
    u = g + \lambda \, p \quad\text{where the mask is true,}\qquad u = g \quad\text{elsewhere}
    $$

    Placed after an adaptive scaling and before `scale_by_learning_rate`, the decay is not
    divided by Adam's RMS, unlike an L2 penalty added to the loss: this is AdamW's decoupled
    decay, and the step is ``-lr·(adam + λ·p)``. Reference: Loshchilov & Hutter 2019,
    "Decoupled weight decay regularization", ICLR, Algorithm 2.

    Args:
        rate: ``λ``, a finite float >= 0.
        mask: ``None`` to decay every leaf; a pytree of bools with the structure of the params
            (``True`` = decay); or a function ``params -> that pytree``, e.g. `matrices_only`,
            which exempts biases.

    Returns:
        An `Optimizer` whose state is `AddDecayedWeightsState`. Its ``update`` needs
        ``params``.

    Raises:
        ValueError: (from ``update``) if ``params`` is not given.
        TypeError: if the mask's leaves are not bools, or (from ``update``) its tree does not
            match the params.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import add_decayed_weights, matrices_only
        >>> opt = add_decayed_weights(0.1, mask=matrices_only)
        >>> params = {"w": jnp.ones((1, 2), jnp.float32), "b": jnp.ones(2, jnp.float32)}
        >>> grads = {"w": jnp.zeros((1, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
        >>> updates, _ = opt.update(grads, opt.init(params), params)
        >>> updates["w"], updates["b"]
        (Array([[0.1, 0.1]], dtype=float32), Array([0., 0.], dtype=float32))
    """
    name = "add_decayed_weights"
    rate = check_float(name, "rate", rate, low=0.0)
    if mask is not None and not callable(mask):
        _check_mask_leaves(name, mask)
    return transformation(name, AddDecayedWeightsState, _decay_update, rate, mask)


def _check_mask_leaves(name: str, mask: Mask) -> None:
    with_paths, _ = jax.tree_util.tree_flatten_with_path(mask)
    for path, leaf in with_paths:
        if not isinstance(leaf, bool | np.bool_):
            raise TypeError(
                f"{name}: mask{jax.tree_util.keystr(path)} must be a bool, "
                f"got {type(leaf).__name__}"
            )


def _decay_update(
    rate: float,
    mask: Mask | MaskFn | None,
    grads: Updates,
    state: AddDecayedWeightsState,
    params: Params | None = None,
) -> tuple[Updates, AddDecayedWeightsState]:
    name = "add_decayed_weights"
    if params is None:
        raise ValueError(f"{name}: update needs params (the decay is rate·params), got None")
    check_gradient_tree(name, grads, None, params)
    if mask is None:
        keep = jax.tree.map(lambda _: True, params)
    else:
        keep = mask(params) if callable(mask) else mask
        _check_mask_leaves(name, keep)
        if jax.tree.structure(keep) != jax.tree.structure(params):
            raise TypeError(
                f"{name}: the mask tree does not match the params tree: expected "
                f"{brief(jax.tree.structure(params))}, got {brief(jax.tree.structure(keep))}"
            )

    def rule(g: jax.Array, p: jax.Array, decay: bool) -> jax.Array:
        return g + rate * jnp.asarray(p).astype(g.dtype) if decay else g

    return jax.tree.map(rule, grads, params, keep), state
