"""Optimizers with a per-element step size: `rmsprop`, `adam`, `nadam`, `adamax`.

All rules are element-wise on every leaf; ``g`` is the gradient, ``t`` the step count after
increment (1 on the first update, so the bias corrections ``1 - β^t`` are never 0), ``lr`` the
learning rate (a float or a schedule ``lr(t)``). Every constant is cast to the leaf's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax.optim.base import (
    Optimizer,
    Params,
    Updates,
    bias_correction,
    check_decay,
    check_eps,
    check_grads,
    check_learning_rate,
    in_dtype,
    learning_rate_at,
    map_leaves,
    zero_timestep,
    zeros_like_params,
)
from nnrs_jax.schedules import Schedule

__all__ = ["AdamState", "RmspropState", "adam", "adamax", "nadam", "rmsprop"]


class RmspropState(NamedTuple):
    """State of `rmsprop`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far.
        scaling_factor: the running mean of squared gradients ``s``; tree, shapes and dtypes of
            the params.
    """

    timestep: jax.Array
    scaling_factor: Params


class AdamState(NamedTuple):
    """State of `adam`, `nadam` and `adamax`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far.
        velocity: the first moment ``m`` (running mean of gradients).
        scaling_factor: the second moment ``s`` (running mean of squared gradients) for `adam`
            and `nadam`; the infinity norm ``u`` for `adamax`.

    Both buffers have the tree, shapes and dtypes of the params.
    """

    timestep: jax.Array
    velocity: Params
    scaling_factor: Params


def rmsprop(learning_rate: float | Schedule, decay: float = 0.9, eps: float = 1e-7) -> Optimizer:
    r"""RMSProp: divide the gradient by a running root mean square of recent gradients.

    .. math::

        s \leftarrow \rho s + (1 - \rho) g^2, \qquad
        p \leftarrow p - \mathrm{lr}(t) \cdot \frac{g}{\sqrt{s + \epsilon}}

    ``eps`` sits inside the square root. ``s`` starts at 0 and is not bias-corrected, so the
    first update is ``-lr·g/√((1-ρ)·g² + eps) ≈ -lr·sign(g)/√(1-ρ)``. Reference: Tieleman &
    Hinton 2012, "Lecture 6.5 - rmsprop", COURSERA: Neural Networks for Machine Learning.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        decay: ``ρ``, with ``0 <= ρ < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `RmspropState` (``scaling_factor`` is ``s``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates, rmsprop
        >>> opt = rmsprop(0.01)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        ...     updates, state = opt.update(grads, state, params)
        ...     return apply_updates(params, updates), state
        >>> for _ in range(400):
        ...     params, state = step(params, state)
        >>> bool(jnp.max(jnp.abs(params["x"])) < 0.05)
        True
    """
    name = "rmsprop"
    learning_rate = check_learning_rate(name, learning_rate)
    decay = check_decay(name, "decay", decay)
    eps = check_eps(name, eps)

    def init(params: Params) -> RmspropState:
        return RmspropState(
            timestep=zero_timestep(), scaling_factor=zeros_like_params(name, params)
        )

    def update(
        grads: Updates, state: RmspropState, params: Params | None = None
    ) -> tuple[Updates, RmspropState]:
        check_grads(name, grads, state.scaling_factor, params)
        t = state.timestep + 1
        lr = learning_rate_at(name, learning_rate, t)

        def rule(g: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
            s = decay * s + (1.0 - decay) * g * g
            return -in_dtype(lr, g.dtype) * g / jnp.sqrt(s + eps), s

        updates, scaling = map_leaves(rule, 2, grads, state.scaling_factor)
        return updates, RmspropState(timestep=t, scaling_factor=scaling)

    return Optimizer(init, update)


# A leaf rule of the Adam family: (g, m, s, lr, c1, c2) -> (update, m, s), where the bias
# corrections c1 = 1 - b1**t and c2 = 1 - b2**t and lr are already in g's dtype.
Array = jax.Array
_Rule = Callable[[Array, Array, Array, Array, Array, Array], tuple[Array, Array, Array]]


def _check_moments(name: str, b1: float, b2: float, eps: float) -> tuple[float, float, float]:
    return check_decay(name, "b1", b1), check_decay(name, "b2", b2), check_eps(name, eps)


def _adam_family(
    name: str, learning_rate: float | Schedule, b1: float, b2: float, rule: _Rule
) -> Optimizer:
    learning_rate = check_learning_rate(name, learning_rate)

    def init(params: Params) -> AdamState:
        return AdamState(
            timestep=zero_timestep(),
            velocity=zeros_like_params(name, params),
            scaling_factor=zeros_like_params(name, params),
        )

    def update(
        grads: Updates, state: AdamState, params: Params | None = None
    ) -> tuple[Updates, AdamState]:
        check_grads(name, grads, state.velocity, params)
        t = state.timestep + 1
        lr = learning_rate_at(name, learning_rate, t)

        def leaf(g: jax.Array, m: jax.Array, s: jax.Array) -> tuple[jax.Array, ...]:
            c1 = bias_correction(b1, t, g.dtype)
            c2 = bias_correction(b2, t, g.dtype)
            return rule(g, m, s, in_dtype(lr, g.dtype), c1, c2)

        updates, m, s = map_leaves(leaf, 3, grads, state.velocity, state.scaling_factor)
        return updates, AdamState(timestep=t, velocity=m, scaling_factor=s)

    return Optimizer(init, update)


def adam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""Adam: momentum on the gradient, scaled by a running RMS, both bias-corrected.

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        s \leftarrow \beta_2 s + (1 - \beta_2) g^2,

        \hat m = \frac{m}{1 - \beta_1^t}, \qquad \hat s = \frac{s}{1 - \beta_2^t}, \qquad
        p \leftarrow p - \mathrm{lr}(t) \cdot \frac{\hat m}{\sqrt{\hat s} + \epsilon}

    ``eps`` sits outside the square root, added to ``√ŝ``. The first update is
    ``-lr·g/(|g| + eps) ≈ -lr·sign(g)``. Reference: Kingma & Ba 2015, "Adam: a method for
    stochastic optimization", Algorithm 1.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `AdamState` (``velocity`` is ``m``, ``scaling_factor``
        is ``s``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import adam, apply_updates
        >>> opt = adam(0.1)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> updates["x"]  # -lr·sign(g) on the first step
        Array([-0.1,  0.1], dtype=float32)
    """
    b1, b2, eps = _check_moments("adam", b1, b2, eps)

    def rule(
        g: Array, m: Array, s: Array, lr: Array, c1: Array, c2: Array
    ) -> tuple[Array, Array, Array]:
        m = b1 * m + (1.0 - b1) * g
        s = b2 * s + (1.0 - b2) * g * g
        return -lr * (m / c1) / (jnp.sqrt(s / c2) + eps), m, s

    return _adam_family("adam", learning_rate, b1, b2, rule)


def nadam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""Nadam: Adam with a Nesterov look-ahead on the first moment.

    With ``m``, ``s``, ``m̂``, ``ŝ`` exactly as in `adam`:

    .. math::

        p \leftarrow p - \mathrm{lr}(t) \cdot
        \frac{\beta_1 \hat m + (1 - \beta_1) g / (1 - \beta_1^t)}
        {\sqrt{\hat s} + \epsilon}

    ``eps`` sits outside the square root. The first update is
    ``-lr·(1 + β1)·g/(|g| + eps) ≈ -lr·(1 + β1)·sign(g)``. Reference: Dozat 2016,
    "Incorporating Nesterov momentum into Adam", ICLR workshop.

    .. note::
        This is the constant-``β1`` form, with both terms bias-corrected by ``1 - β1^t``.
        Dozat 2016 uses a momentum schedule ``μ_t`` and corrects with products of the ``μ_i``;
        Keras and PyTorch follow him with ``μ_t = β1·(1 - ½·0.96^(0.004·t))``, so their updates
        differ from these. optax's ``nadam`` keeps ``β1`` constant but corrects the momentum term
        with ``1 - β1^(t+1)`` (and defaults to ``eps = 1e-8``), so it differs slightly too.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `AdamState` (``velocity`` is ``m``, ``scaling_factor``
        is ``s``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates, nadam
        >>> opt = nadam(0.05)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        ...     updates, state = opt.update(grads, state, params)
        ...     return apply_updates(params, updates), state
        >>> for _ in range(300):
        ...     params, state = step(params, state)
        >>> bool(jnp.max(jnp.abs(params["x"])) < 0.05)
        True
    """
    b1, b2, eps = _check_moments("nadam", b1, b2, eps)

    def rule(
        g: Array, m: Array, s: Array, lr: Array, c1: Array, c2: Array
    ) -> tuple[Array, Array, Array]:
        m = b1 * m + (1.0 - b1) * g
        s = b2 * s + (1.0 - b2) * g * g
        lookahead = b1 * (m / c1) + (1.0 - b1) * g / c1
        return -lr * lookahead / (jnp.sqrt(s / c2) + eps), m, s

    return _adam_family("nadam", learning_rate, b1, b2, rule)


def adamax(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""AdaMax: Adam with the second moment replaced by an exponentially weighted infinity norm.

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        u \leftarrow \max(\beta_2 u, |g|), \qquad
        p \leftarrow p - \mathrm{lr}(t) \cdot \frac{m}{(1 - \beta_1^t)(u + \epsilon)}

    ``u`` needs no bias correction; ``eps`` is added to ``u`` (the paper has none; it guards the
    division where a gradient entry has been 0 since the start). The first update is
    ``-lr·g/(|g| + eps) ≈ -lr·sign(g)``. Reference: Kingma & Ba 2015, "Adam: a method for
    stochastic optimization", section 7.1.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `AdamState` (``velocity`` is ``m``, ``scaling_factor``
        is ``u``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.optim import adamax, apply_updates
        >>> opt = adamax(0.05)
        >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
        ...     updates, state = opt.update(grads, state, params)
        ...     return apply_updates(params, updates), state
        >>> for _ in range(300):
        ...     params, state = step(params, state)
        >>> bool(jnp.max(jnp.abs(params["x"])) < 0.05)
        True
    """
    b1, b2, eps = _check_moments("adamax", b1, b2, eps)

    def rule(
        g: Array, m: Array, u: Array, lr: Array, c1: Array, c2: Array
    ) -> tuple[Array, Array, Array]:
        del c2  # the infinity norm is not biased towards 0
        m = b1 * m + (1.0 - b1) * g
        u = jnp.maximum(b2 * u, jnp.abs(g))
        return -lr * m / (c1 * (u + eps)), m, u

    return _adam_family("adamax", learning_rate, b1, b2, rule)
