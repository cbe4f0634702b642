"""Optimizers as pure state transitions over pytrees: ``Optimizer(init, update)``.

Every optimizer here is a factory returning an `Optimizer`; its state is a NamedTuple with an
int32 ``timestep`` (0 before the first update, incremented before it is used, so ``t = 1`` on
the first step) and, where the rule needs them, ``velocity`` (first moment / momentum buffer) and
``scaling_factor`` (second moment / infinity norm) with the tree, shapes and dtypes of the params.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nnrs_jax.optim import adam, apply_updates
    >>> opt = adam(0.1)
    >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
    >>> state = opt.init(params)
    >>> @jax.jit
    ... def step(params, state):
    ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
    ...     updates, state = opt.update(grads, state, params)
    ...     return apply_updates(params, updates), state
    >>> for _ in range(100):
    ...     params, state = step(params, state)
    >>> int(state.timestep), bool(jnp.max(jnp.abs(params["x"])) < 0.1)
    (100, True)
"""

from nnrs_jax.optim.adaptive import AdamState, RmspropState, adam, adamax, nadam, rmsprop
from nnrs_jax.optim.base import Optimizer, apply_updates
from nnrs_jax.optim.gradient_descent import MomentumState, SgdState, momentum, nesterov, sgd

__all__ = [
    "AdamState",
    "MomentumState",
    "Optimizer",
    "RmspropState",
    "SgdState",
    "adam",
    "adamax",
    "apply_updates",
    "momentum",
    "nadam",
    "nesterov",
    "rmsprop",
    "sgd",
]
