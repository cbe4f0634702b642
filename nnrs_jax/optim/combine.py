"""`chain`, which composes gradient transformations into one `Optimizer`.

A transformation maps a gradient tree (or the output of the transformation before it) to a tree
of the same structure, shapes and dtypes: the scalings of `nnrs_jax.optim.scaling`, the clipping
of `nnrs_jax.optim.clipping` and the weight decay of `nnrs_jax.optim.weight_decay`. `chain` feeds
each one's output to the next; its state is the tuple of their states. The seven classic
optimizers are chains of these pieces, e.g.
``adam(lr) = chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))``; the descent sign
and the step size come from `scale_by_learning_rate`, usually last.

Example: clip the gradient, take Adam's direction, add decoupled weight decay on the weight
matrices only, then step by the learning rate:

    >>> import jax.numpy as jnp, numpy as np
    >>> from nnrs_jax.optim import (add_decayed_weights, apply_updates, chain,
    ...     clip_by_global_norm, matrices_only, scale_by_adam, scale_by_learning_rate)
    >>> opt = chain(clip_by_global_norm(1.0), scale_by_adam(),
    ...             add_decayed_weights(1e-2, mask=matrices_only), scale_by_learning_rate(0.1))
    >>> params = {"w": jnp.ones((2, 2), jnp.float32), "b": jnp.ones(2, jnp.float32)}
    >>> state = opt.init(params)
    >>> [type(s).__name__ for s in state]  # doctest: +NORMALIZE_WHITESPACE
    ['ClipByGlobalNormState', 'ScaleByAdamState',
     'AddDecayedWeightsState', 'ScaleByLearningRateState']
    >>> updates, state = opt.update(params, state, params)
    >>> np.round(np.asarray(updates["w"], np.float64), 4)  # -0.1·(1 + 0.01): decayed
    array([[-0.101, -0.101],
           [-0.101, -0.101]])
    >>> np.round(np.asarray(updates["b"], np.float64), 4)  # -0.1·1: a vector, not decayed
    array([-0.1, -0.1])
"""

from __future__ import annotations

from nnrs_jax.optim.base import Optimizer, OptState, Params, Updates, bind

__all__ = ["chain"]


def chain(*transforms: Optimizer) -> Optimizer:
    r"""Compose transformations: each one's updates are the next one's input.

    $$
    u = T_n(\dots T_2(T_1(g)))
    $$

    where each ``T_i`` also sees ``params`` and keeps its own state. ``chain()`` is the
    identity. Any object with ``init`` and ``update`` functions of this contract can be a link,
    e.g. a transformation from another library with the same signature.

    Args:
        *transforms: `Optimizer` values (or pairs with callable ``init`` and ``update``).

    Returns:
        An `Optimizer` whose state is the tuple of the children's states, in order.

    Raises:
        TypeError: if an argument has no callable ``init`` and ``update``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import chain, clip, scale_by_learning_rate
        >>> opt = chain(clip(1.0), scale_by_learning_rate(0.5))
        >>> g = {"x": jnp.array([0.5, -4.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> updates["x"]  # -0.5·clip(g, -1, 1)
        Array([-0.25,  0.5 ], dtype=float32)
        >>> int(state[1].timestep)
        1
    """
    for i, transform in enumerate(transforms):
        if not (
            callable(getattr(transform, "init", None))
            and callable(getattr(transform, "update", None))
        ):
            raise TypeError(
                f"chain: argument {i} must be an Optimizer (init and update functions), "
                f"got {type(transform).__name__}"
            )
    return Optimizer(bind(_chain_init, transforms), bind(_chain_update, transforms))


def _chain_init(transforms: tuple[Optimizer, ...], params: Params) -> tuple[OptState, ...]:
    return tuple(transform.init(params) for transform in transforms)


def _chain_update(
    transforms: tuple[Optimizer, ...],
    grads: Updates,
    state: tuple[OptState, ...],
    params: Params | None = None,
) -> tuple[Updates, tuple[OptState, ...]]:
    if not isinstance(state, tuple) or len(state) != len(transforms):
        got = f"{len(state)}-tuple" if isinstance(state, tuple) else type(state).__name__
        raise TypeError(
            f"chain: the state must be the tuple of the {len(transforms)} children's states, "
            f"got a {got}"
        )
    new_state = []
    for transform, child_state in zip(transforms, state, strict=True):
        grads, child_state = transform.update(grads, child_state, params)
        new_state.append(child_state)
    return grads, tuple(new_state)
