"""Transformations that rescale the gradient: the learning rate, momentum, RMS, Adam, AdaMax.

Each is an `Optimizer` meant to be composed by `chain`. In every rule ``g`` is the incoming tree,
element-wise on each leaf, and ``t`` the transformation's own step count after increment (1 on
the first update). Every constant is cast to the leaf's dtype, so float32 and float64 leaves keep
their dtype. `check_moments` validates the hyperparameters that the Adam family shares.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_bool, check_probability
from nnrs_jax.optim.base import (
    Optimizer,
    Params,
    Updates,
    bias_correction,
    check_gradient_tree,
    check_learning_rate,
    check_positive,
    in_dtype,
    learning_rate_at,
    map_leaves,
    transformation,
)
from nnrs_jax.schedules import Schedule

__all__ = [
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByLearningRateState",
    "ScaleByMomentumState",
    "ScaleByRmsState",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_momentum",
    "scale_by_rms",
]


# --- the learning rate ------------------------------------------------------------------------


class ScaleByLearningRateState(NamedTuple):
    """State of `scale_by_learning_rate`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far; the schedule is called with
            ``timestep + 1``.
    """

    timestep: jax.Array


def scale_by_learning_rate(learning_rate: float | Schedule) -> Optimizer:
    r"""Multiply by minus the learning rate: the descent step.

    $$
    u = -\mathrm{lr}(t) \cdot g
    $$

    The state counts the updates even for a constant learning rate, so that the state's tree
    does not depend on whether a schedule is used. Reference: Robbins & Monro 1951, "A
    stochastic approximation method".

    Args:
        learning_rate: a finite float > 0, a scalar floating JAX array (it may be traced, e.g.
            under ``vmap``), or a schedule ``t -> lr`` called in-graph with the int32 step
            count after increment (1 on the first update).

    Returns:
        An `Optimizer` whose state is `ScaleByLearningRateState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_learning_rate
        >>> opt = scale_by_learning_rate(lambda t: 0.5 / t.astype(jnp.float32))
        >>> g = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> state = opt.init(g)
        >>> for _ in range(2):
        ...     updates, state = opt.update(g, state)
        >>> updates["x"]  # -lr(2)·g = -0.25·g
        Array([-0.25,  0.5 ], dtype=float32)
    """
    name = "scale_by_learning_rate"
    learning_rate = check_learning_rate(name, learning_rate)
    return transformation(name, ScaleByLearningRateState, _learning_rate_update, learning_rate)


def _learning_rate_update(
    learning_rate: float | jax.Array | Schedule,
    grads: Updates,
    state: ScaleByLearningRateState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByLearningRateState]:
    name = "scale_by_learning_rate"
    check_gradient_tree(name, grads, None, params)
    t = state.timestep + 1
    lr = learning_rate_at(name, learning_rate, t)
    updates = jax.tree.map(lambda g: -in_dtype(lr, g.dtype) * g, grads)
    return updates, ScaleByLearningRateState(timestep=t)


# --- momentum ---------------------------------------------------------------------------------


class ScaleByMomentumState(NamedTuple):
    """State of `scale_by_momentum`.

    Attributes:
        velocity: the momentum buffer ``v``, same tree, shapes and dtypes as the params.
    """

    velocity: Params


def scale_by_momentum(momentum: float = 0.9, nesterov: bool = False) -> Optimizer:
    r"""Heavy-ball momentum, or its Nesterov form.

    $$
    v \leftarrow \mu v + g, \qquad
    u = v \quad\text{or, with } \texttt{nesterov}, \quad u = g + \mu v
    $$

    with the new ``v`` on the right; ``v`` starts at 0. References: Polyak 1964, "Some methods
    of speeding up the convergence of iteration methods"; for ``nesterov``, Sutskever, Martens,
    Dahl & Hinton 2013, "On the importance of initialization and momentum in deep learning".

    Args:
        momentum: ``μ``, with ``0 <= μ < 1``.
        nesterov: use the look-ahead form ``g + μ·v``.

    Returns:
        An `Optimizer` whose state is `ScaleByMomentumState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_momentum
        >>> opt = scale_by_momentum(0.5, nesterov=True)
        >>> g = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> updates["x"], state.velocity["x"]  # v = g, u = g + 0.5·v
        (Array([ 1.5, -3. ], dtype=float32), Array([ 1., -2.], dtype=float32))
    """
    name = "scale_by_momentum"
    momentum = check_probability(name, "momentum", momentum)
    nesterov = check_bool(name, "nesterov", nesterov)
    return transformation(name, ScaleByMomentumState, _momentum_update, momentum, nesterov)


def _momentum_update(
    mu: float,
    nesterov: bool,
    grads: Updates,
    state: ScaleByMomentumState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByMomentumState]:
    check_gradient_tree("scale_by_momentum", grads, state.velocity, params)

    def rule(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = mu * v + g
        return (g + mu * v if nesterov else v), v

    updates, velocity = map_leaves(rule, 2, grads, state.velocity)
    return updates, ScaleByMomentumState(velocity=velocity)


# --- RMS --------------------------------------------------------------------------------------


class ScaleByRmsState(NamedTuple):
    """State of `scale_by_rms`.

    Attributes:
        scaling_factor: the running mean of squared gradients ``s``; tree, shapes and dtypes
            of the params.
    """

    scaling_factor: Params


def scale_by_rms(decay: float = 0.9, eps: float = 1e-7) -> Optimizer:
    r"""Divide by a running root mean square of the gradients (RMSProp's scaling).

    $$
    s \leftarrow \rho s + (1 - \rho) g^2, \qquad u = \frac{g}{\sqrt{s + \epsilon}}
    $$

    ``eps`` sits inside the square root; ``s`` starts at 0 and is not bias-corrected.
    Reference: Tieleman & Hinton 2012, "Lecture 6.5 - rmsprop", COURSERA: Neural Networks for
    Machine Learning.

    Args:
        decay: ``ρ``, with ``0 <= ρ < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `ScaleByRmsState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_rms
        >>> opt = scale_by_rms(decay=0.75)
        >>> g = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> jnp.round(updates["x"], 4)  # g/√(0.25·g²) = 2·sign(g)
        Array([ 2., -2.], dtype=float32)
    """
    name = "scale_by_rms"
    decay = check_probability(name, "decay", decay)
    eps = check_positive(name, "eps", eps)
    return transformation(name, ScaleByRmsState, _rms_update, decay, eps)


def _rms_update(
    decay: float, eps: float, grads: Updates, state: ScaleByRmsState, params: Params | None = None
) -> tuple[Updates, ScaleByRmsState]:
    check_gradient_tree("scale_by_rms", grads, state.scaling_factor, params)

    def rule(g: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = decay * s + (1.0 - decay) * g * g
        return g / jnp.sqrt(s + eps), s

    updates, scaling = map_leaves(rule, 2, grads, state.scaling_factor)
    return updates, ScaleByRmsState(scaling_factor=scaling)


# --- Adam and AdaMax --------------------------------------------------------------------------


class ScaleByAdamState(NamedTuple):
    """State of `scale_by_adam`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far (for the bias corrections).
        velocity: the first moment ``m``; tree, shapes and dtypes of the params.
        scaling_factor: the second moment ``s``; tree, shapes and dtypes of the params.
    """

    timestep: jax.Array
    velocity: Params
    scaling_factor: Params


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7, nesterov: bool = False
) -> Optimizer:
    r"""Adam's direction: bias-corrected momentum over a bias-corrected running RMS.

    $$
    m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
    s \leftarrow \beta_2 s + (1 - \beta_2) g^2, \qquad
    \hat m = \frac{m}{1 - \beta_1^t}, \qquad \hat s = \frac{s}{1 - \beta_2^t},

    u = \frac{\hat m}{\sqrt{\hat s} + \epsilon}
    \quad\text{or, with } \texttt{nesterov}, \quad
    u = \frac{\beta_1 \hat m + (1 - \beta_1) g / (1 - \beta_1^t)}{\sqrt{\hat s} + \epsilon}
    $$

    ``eps`` sits outside the square root. The first ``u`` is ``g/(|g| + eps) ≈ sign(g)``
    (times ``1 + β1`` with ``nesterov``). ``1 - β^t`` is computed as ``-expm1(t·log β)``, exact
    to a few ulps even in float32. References: Kingma & Ba 2015, "Adam: a method for stochastic
    optimization", Algorithm 1; for ``nesterov``, Dozat 2016, "Incorporating Nesterov momentum
    into Adam" (in the constant-``β1`` form described in `nadam`).

    Args:
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.
        nesterov: use Nadam's look-ahead on the first moment.

    Returns:
        An `Optimizer` whose state is `ScaleByAdamState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_adam
        >>> opt = scale_by_adam()
        >>> g = {"x": jnp.array([0.5, -2.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> jnp.round(updates["x"], 4)  # sign(g) on the first step
        Array([ 1., -1.], dtype=float32)
    """
    name = "scale_by_adam"
    b1, b2, eps = check_moments(name, b1, b2, eps)
    nesterov = check_bool(name, "nesterov", nesterov)
    return transformation(
        name, ScaleByAdamState, _moments_update, name, b1, b2, eps, nesterov, False
    )


def check_moments(name: str, b1: Any, b2: Any, eps: Any) -> tuple[float, float, float]:
    """``β1``, ``β2`` in ``[0, 1)`` and ``eps > 0``, the hyperparameters of the Adam family."""
    return (
        check_probability(name, "b1", b1),
        check_probability(name, "b2", b2),
        check_positive(name, "eps", eps),
    )


def _moments_update(
    name: str,
    b1: float,
    b2: float,
    eps: float,
    nesterov: bool,
    infinity_norm: bool,
    grads: Updates,
    state: ScaleByAdamState | ScaleByAdamaxState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByAdamState | ScaleByAdamaxState]:
    """The update of `scale_by_adam` and, with ``infinity_norm``, of `scale_by_adamax`."""
    check_gradient_tree(name, grads, state.velocity, params)
    t = state.timestep + 1

    def rule(g: jax.Array, m: jax.Array, s: jax.Array) -> tuple[jax.Array, ...]:
        c1 = bias_correction(b1, t, g.dtype)
        m = b1 * m + (1.0 - b1) * g
        if infinity_norm:  # AdaMax: s is u∞, not bias-corrected
            s = jnp.maximum(b2 * s, jnp.abs(g))
            return m / (c1 * (s + eps)), m, s
        c2 = bias_correction(b2, t, g.dtype)
        s = b2 * s + (1.0 - b2) * g * g
        first = b1 * (m / c1) + (1.0 - b1) * g / c1 if nesterov else m / c1
        return first / (jnp.sqrt(s / c2) + eps), m, s

    updates, m, s = map_leaves(rule, 3, grads, state.velocity, state.scaling_factor)
    return updates, type(state)(timestep=t, velocity=m, scaling_factor=s)


class ScaleByAdamaxState(NamedTuple):
    """State of `scale_by_adamax`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far (for the bias correction).
        velocity: the first moment ``m``; tree, shapes and dtypes of the params.
        scaling_factor: the exponentially weighted infinity norm ``u``; same tree.
    """

    timestep: jax.Array
    velocity: Params
    scaling_factor: Params


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> Optimizer:
    r"""AdaMax's direction: bias-corrected momentum over an exponentially weighted infinity norm.

    $$
    m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
    u_\infty \leftarrow \max(\beta_2 u_\infty, |g|), \qquad
    u = \frac{m}{(1 - \beta_1^t)(u_\infty + \epsilon)}
    $$

    ``u∞`` needs no bias correction; ``eps`` is added to it (the paper has none; it guards the
    division where a gradient entry has been 0 since the start). Reference: Kingma & Ba 2015,
    "Adam: a method for stochastic optimization", section 7.1.

    Args:
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `ScaleByAdamaxState` (``scaling_factor`` is ``u∞``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_adamax
        >>> opt = scale_by_adamax()
        >>> g = {"x": jnp.array([0.5, -2.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> jnp.round(updates["x"], 4), state.scaling_factor["x"]
        (Array([ 1., -1.], dtype=float32), Array([0.5, 2. ], dtype=float32))
    """
    name = "scale_by_adamax"
    b1, b2, eps = check_moments(name, b1, b2, eps)
    return transformation(name, ScaleByAdamaxState, _moments_update, name, b1, b2, eps, False, True)
