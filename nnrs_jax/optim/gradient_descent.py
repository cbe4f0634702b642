"""Gradient descent with and without momentum: `sgd`, `momentum`, `nesterov`.

Each is a `chain` of transformations from `nnrs_jax.optim.scaling` whose tuple of states is
kept as one NamedTuple (``SgdState``, ``MomentumState``), so that ``state.timestep`` and
``state.velocity`` read as before. All rules are element-wise on every leaf; ``g`` is the
gradient, ``t`` the step count after increment (1 on the first update), ``lr`` the learning rate
(a float or a schedule ``lr(t)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from nnrs_jax._validate import check_probability
from nnrs_jax.optim.base import Optimizer, Params, check_learning_rate, flatten_state
from nnrs_jax.optim.combine import chain
from nnrs_jax.optim.scaling import (
    ScaleByLearningRateState,
    ScaleByMomentumState,
    scale_by_learning_rate,
    scale_by_momentum,
)
from nnrs_jax.schedules import Schedule

__all__ = ["MomentumState", "SgdState", "momentum", "nesterov", "sgd"]


class SgdState(NamedTuple):
    """State of `sgd`: only the int32 step count (0 before the first update)."""

    timestep: jax.Array


class MomentumState(NamedTuple):
    """State of `momentum` and `nesterov`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far.
        velocity: the momentum buffer ``v``, same tree, shapes and dtypes as the params.
    """

    timestep: jax.Array
    velocity: Params


def sgd(learning_rate: float | Schedule) -> Optimizer:
    r"""Plain stochastic gradient descent.

    $$
    p \leftarrow p - \mathrm{lr}(t) \cdot g
    $$

    Composition: ``sgd(lr) = chain(scale_by_learning_rate(lr))``, its state kept as `SgdState`.
    Reference: Robbins & Monro 1951, "A stochastic approximation method".

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` called with the int32
            timestep after increment (1 on the first update).

    Returns:
        An `Optimizer` whose state is `SgdState`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates, sgd
        >>> opt = sgd(0.1)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)  # 2·x
        >>> updates, state = opt.update(grads, state, params)
        >>> apply_updates(params, updates)["x"]  # x - 0.1·2·x
        Array([ 0.8, -1.6], dtype=float32)
        >>> int(state.timestep)
        1
    """
    learning_rate = check_learning_rate("sgd", learning_rate)
    return flatten_state(
        "sgd", chain(scale_by_learning_rate(learning_rate)), SgdState, (ScaleByLearningRateState,)
    )


def _momentum_family(
    name: str, learning_rate: float | Schedule, mu: float, nesterov: bool
) -> Optimizer:
    learning_rate = check_learning_rate(name, learning_rate)
    mu = check_probability(name, "momentum", mu)
    return flatten_state(
        name,
        chain(scale_by_momentum(mu, nesterov=nesterov), scale_by_learning_rate(learning_rate)),
        MomentumState,
        (ScaleByMomentumState, ScaleByLearningRateState),
    )


def momentum(learning_rate: float | Schedule, momentum: float = 0.9) -> Optimizer:
    r"""Gradient descent with heavy-ball momentum.

    $$
    v \leftarrow \mu v + g, \qquad p \leftarrow p - \mathrm{lr}(t) \cdot v
    $$

    ``v`` starts at 0, so the first update is ``-lr·g``. Composition:
    ``momentum(lr, μ) = chain(scale_by_momentum(μ), scale_by_learning_rate(lr))``, its states
    kept as one `MomentumState`. Reference: Polyak 1964, "Some methods of speeding up the
    convergence of iteration methods".

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        momentum: ``μ``, with ``0 <= μ < 1``.

    Returns:
        An `Optimizer` whose state is `MomentumState` (``velocity`` is ``v``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates, momentum
        >>> opt = momentum(0.05, momentum=0.9)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        ...     updates, state = opt.update(grads, state, params)
        ...     return apply_updates(params, updates), state
        >>> for _ in range(200):
        ...     params, state = step(params, state)
        >>> bool(jnp.max(jnp.abs(params["x"])) < 1e-3)
        True
    """
    return _momentum_family("momentum", learning_rate, momentum, nesterov=False)


def nesterov(learning_rate: float | Schedule, momentum: float = 0.9) -> Optimizer:
    r"""Nesterov accelerated gradient, in the form that needs no look-ahead gradient.

    $$
    v \leftarrow \mu v + g, \qquad p \leftarrow p - \mathrm{lr}(t) \cdot (g + \mu v)
    $$

    with the new ``v`` on the right. The first update is ``-lr·(1 + μ)·g``. Composition:
    ``nesterov(lr, μ) = chain(scale_by_momentum(μ, nesterov=True), scale_by_learning_rate(lr))``,
    its states kept as one `MomentumState`. Reference:
    Sutskever, Martens, Dahl & Hinton 2013, "On the importance of initialization and momentum in
    deep learning".

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        momentum: ``μ``, with ``0 <= μ < 1``.

    Returns:
        An `Optimizer` whose state is `MomentumState` (``velocity`` is ``v``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates, nesterov
        >>> opt = nesterov(0.05, momentum=0.9)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        ...     updates, state = opt.update(grads, state, params)
        ...     return apply_updates(params, updates), state
        >>> for _ in range(200):
        ...     params, state = step(params, state)
        >>> bool(jnp.max(jnp.abs(params["x"])) < 1e-3)
        True
    """
    return _momentum_family("nesterov", learning_rate, momentum, nesterov=True)
