"""Gradient transformations, each an `Optimizer`, and `chain`, which composes them.

A transformation maps a gradient tree (or the output of the transformation before it) to a tree
of the same structure, shapes and dtypes. `chain` feeds each one's output to the next; its state
is the tuple of their states. The seven classic optimizers are chains of these pieces, e.g.
``adam(lr) = chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))``; the descent sign
and the step size come from `scale_by_learning_rate`, usually last.

In every rule ``g`` is the incoming tree, element-wise on each leaf unless said otherwise, and
``t`` the transformation's own step count after increment (1 on the first update). Every
constant is cast to the leaf's dtype, so float32 and float64 leaves keep their dtype.

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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_float, check_probability
from nnrs_jax.optim.base import (
    Optimizer,
    OptState,
    Params,
    Updates,
    bias_correction,
    bind,
    brief,
    check_floating,
    check_grads,
    check_learning_rate,
    check_positive,
    in_dtype,
    learning_rate_at,
    map_leaves,
    zero_timestep,
    zeros_like_params,
)
from nnrs_jax.schedules import Schedule

__all__ = [
    "AddDecayedWeightsState",
    "ClipByGlobalNormState",
    "ClipState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByLearningRateState",
    "ScaleByMomentumState",
    "ScaleByRmsState",
    "add_decayed_weights",
    "chain",
    "clip",
    "clip_by_global_norm",
    "matrices_only",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_momentum",
    "scale_by_rms",
]

Mask = Any  # a pytree of bools with the structure of the params
MaskFn = Callable[[Params], Mask]


# --- chain ------------------------------------------------------------------------------------


def chain(*transforms: Optimizer) -> Optimizer:
    r"""Compose transformations: each one's updates are the next one's input.

    .. math::

        u = T_n(\dots T_2(T_1(g)))

    where each ``T_i`` also sees ``params`` and keeps its own state. ``chain()`` is the
    identity. Any object with ``init`` and ``update`` functions of this contract can be a link,
    e.g. a transformation from another library with the same signature.

    Args:
        *transforms: `Optimizer` values (or pairs with callable ``init`` and ``update``).

    Returns:
        An `Optimizer` whose state is the tuple of the children's states, in order.

    Raises:
        TypeError: if an argument has no callable ``init`` and ``update``.

    Example:
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


def _stateless_init(name: str, state_type: type, params: Params) -> NamedTuple:
    check_floating(name, params)
    return state_type()


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

    .. math::

        u = -\mathrm{lr}(t) \cdot g

    The state counts the updates even for a constant learning rate, so that the state's tree
    does not depend on whether a schedule is used. Reference: Robbins & Monro 1951, "A
    stochastic approximation method".

    Args:
        learning_rate: a finite float > 0, a scalar floating JAX array (it may be traced, e.g.
            under ``vmap``), or a schedule ``t -> lr`` called in-graph with the int32 step
            count after increment (1 on the first update).

    Returns:
        An `Optimizer` whose state is `ScaleByLearningRateState`.

    Example:
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
    learning_rate = check_learning_rate("scale_by_learning_rate", learning_rate)
    return Optimizer(bind(_learning_rate_init), bind(_learning_rate_update, learning_rate))


def _learning_rate_init(params: Params) -> ScaleByLearningRateState:
    check_floating("scale_by_learning_rate", params)
    return ScaleByLearningRateState(timestep=zero_timestep())


def _learning_rate_update(
    learning_rate: float | jax.Array | Schedule,
    grads: Updates,
    state: ScaleByLearningRateState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByLearningRateState]:
    name = "scale_by_learning_rate"
    check_grads(name, grads, None, params)
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

    .. math::

        v \leftarrow \mu v + g, \qquad
        u = v \quad\text{or, with } \texttt{nesterov}, \quad u = g + \mu v

    with the new ``v`` on the right; ``v`` starts at 0. References: Polyak 1964, "Some methods
    of speeding up the convergence of iteration methods"; for ``nesterov``, Sutskever, Martens,
    Dahl & Hinton 2013, "On the importance of initialization and momentum in deep learning".

    Args:
        momentum: ``μ``, with ``0 <= μ < 1``.
        nesterov: use the look-ahead form ``g + μ·v``.

    Returns:
        An `Optimizer` whose state is `ScaleByMomentumState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import scale_by_momentum
        >>> opt = scale_by_momentum(0.5, nesterov=True)
        >>> g = {"x": jnp.array([1.0, -2.0], jnp.float32)}
        >>> updates, state = opt.update(g, opt.init(g))
        >>> updates["x"]  # v = g, u = g + 0.5·v
        Array([ 1.5, -3. ], dtype=float32)
    """
    name = "scale_by_momentum"
    momentum = check_probability(name, "momentum", momentum)
    nesterov = _check_bool(name, "nesterov", nesterov)
    return Optimizer(bind(_momentum_init), bind(_momentum_update, momentum, nesterov))


def _momentum_init(params: Params) -> ScaleByMomentumState:
    return ScaleByMomentumState(velocity=zeros_like_params("scale_by_momentum", params))


def _momentum_update(
    mu: float,
    nesterov: bool,
    grads: Updates,
    state: ScaleByMomentumState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByMomentumState]:
    check_grads("scale_by_momentum", grads, state.velocity, params)

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

    .. math::

        s \leftarrow \rho s + (1 - \rho) g^2, \qquad u = \frac{g}{\sqrt{s + \epsilon}}

    ``eps`` sits inside the square root; ``s`` starts at 0 and is not bias-corrected.
    Reference: Tieleman & Hinton 2012, "Lecture 6.5 - rmsprop", COURSERA: Neural Networks for
    Machine Learning.

    Args:
        decay: ``ρ``, with ``0 <= ρ < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `ScaleByRmsState`.

    Example:
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
    return Optimizer(bind(_rms_init), bind(_rms_update, decay, eps))


def _rms_init(params: Params) -> ScaleByRmsState:
    return ScaleByRmsState(scaling_factor=zeros_like_params("scale_by_rms", params))


def _rms_update(
    decay: float, eps: float, grads: Updates, state: ScaleByRmsState, params: Params | None = None
) -> tuple[Updates, ScaleByRmsState]:
    check_grads("scale_by_rms", grads, state.scaling_factor, params)

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

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        s \leftarrow \beta_2 s + (1 - \beta_2) g^2, \qquad
        \hat m = \frac{m}{1 - \beta_1^t}, \qquad \hat s = \frac{s}{1 - \beta_2^t},

        u = \frac{\hat m}{\sqrt{\hat s} + \epsilon}
        \quad\text{or, with } \texttt{nesterov}, \quad
        u = \frac{\beta_1 \hat m + (1 - \beta_1) g / (1 - \beta_1^t)}{\sqrt{\hat s} + \epsilon}

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

    Example:
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
    nesterov = _check_bool(name, "nesterov", nesterov)
    return Optimizer(
        bind(_adam_init, name, ScaleByAdamState), bind(_adam_update, b1, b2, eps, nesterov)
    )


def check_moments(name: str, b1: Any, b2: Any, eps: Any) -> tuple[float, float, float]:
    """``β1``, ``β2`` in ``[0, 1)`` and ``eps > 0``, the hyperparameters of the Adam family."""
    return (
        check_probability(name, "b1", b1),
        check_probability(name, "b2", b2),
        check_positive(name, "eps", eps),
    )


def _adam_init(name: str, state_type: type, params: Params) -> NamedTuple:
    return state_type(
        timestep=zero_timestep(),
        velocity=zeros_like_params(name, params),
        scaling_factor=zeros_like_params(name, params),
    )


def _adam_update(
    b1: float,
    b2: float,
    eps: float,
    nesterov: bool,
    grads: Updates,
    state: ScaleByAdamState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByAdamState]:
    check_grads("scale_by_adam", grads, state.velocity, params)
    t = state.timestep + 1

    def rule(g: jax.Array, m: jax.Array, s: jax.Array) -> tuple[jax.Array, ...]:
        c1 = bias_correction(b1, t, g.dtype)
        c2 = bias_correction(b2, t, g.dtype)
        m = b1 * m + (1.0 - b1) * g
        s = b2 * s + (1.0 - b2) * g * g
        first = b1 * (m / c1) + (1.0 - b1) * g / c1 if nesterov else m / c1
        return first / (jnp.sqrt(s / c2) + eps), m, s

    updates, m, s = map_leaves(rule, 3, grads, state.velocity, state.scaling_factor)
    return updates, ScaleByAdamState(timestep=t, velocity=m, scaling_factor=s)


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

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        u_\infty \leftarrow \max(\beta_2 u_\infty, |g|), \qquad
        u = \frac{m}{(1 - \beta_1^t)(u_\infty + \epsilon)}

    ``u∞`` needs no bias correction; ``eps`` is added to it (the paper has none; it guards the
    division where a gradient entry has been 0 since the start). Reference: Kingma & Ba 2015,
    "Adam: a method for stochastic optimization", section 7.1.

    Args:
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `ScaleByAdamaxState` (``scaling_factor`` is ``u∞``).

    Example:
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
    return Optimizer(bind(_adam_init, name, ScaleByAdamaxState), bind(_adamax_update, b1, b2, eps))


def _adamax_update(
    b1: float,
    b2: float,
    eps: float,
    grads: Updates,
    state: ScaleByAdamaxState,
    params: Params | None = None,
) -> tuple[Updates, ScaleByAdamaxState]:
    check_grads("scale_by_adamax", grads, state.velocity, params)
    t = state.timestep + 1

    def rule(g: jax.Array, m: jax.Array, u: jax.Array) -> tuple[jax.Array, ...]:
        c1 = bias_correction(b1, t, g.dtype)
        m = b1 * m + (1.0 - b1) * g
        u = jnp.maximum(b2 * u, jnp.abs(g))
        return m / (c1 * (u + eps)), m, u

    updates, m, u = map_leaves(rule, 3, grads, state.velocity, state.scaling_factor)
    return updates, ScaleByAdamaxState(timestep=t, velocity=m, scaling_factor=u)


# --- clipping ---------------------------------------------------------------------------------


class ClipState(NamedTuple):
    """State of `clip`: empty."""


def clip(max_delta: float) -> Optimizer:
    r"""Clip every entry to ``[-max_delta, max_delta]``.

    .. math::

        u = \min(\max(g, -\delta), \delta)

    Reference: Mikolov 2012, "Statistical language models based on neural networks", PhD
    thesis, Brno University of Technology, section 3.2.

    Args:
        max_delta: ``δ``, a finite float > 0.

    Returns:
        An `Optimizer` whose state is `ClipState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import clip
        >>> opt = clip(1.0)
        >>> g = {"x": jnp.array([0.5, -3.0], jnp.float32)}
        >>> opt.update(g, opt.init(g))[0]["x"]
        Array([ 0.5, -1. ], dtype=float32)
    """
    max_delta = check_positive("clip", "max_delta", max_delta)
    return Optimizer(bind(_stateless_init, "clip", ClipState), bind(_clip_update, max_delta))


def _clip_update(
    max_delta: float, grads: Updates, state: ClipState, params: Params | None = None
) -> tuple[Updates, ClipState]:
    check_grads("clip", grads, None, params)
    return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), grads), state


class ClipByGlobalNormState(NamedTuple):
    """State of `clip_by_global_norm`: empty."""


def clip_by_global_norm(max_norm: float) -> Optimizer:
    r"""Scale the whole tree down so that its global L2 norm is at most ``max_norm``.

    .. math::

        \|g\| = \sqrt{\textstyle\sum_{\text{leaves}} \sum g^2}, \qquad
        u = g \cdot \frac{c}{\max(\|g\|, c)}

    A tree whose norm is at most ``c`` passes unchanged (the factor is exactly 1); otherwise
    every leaf is scaled by the same factor, so the direction is kept. The norm is accumulated
    in the widest dtype of the leaves (at least float32). Reference: Pascanu, Mikolov & Bengio
    2013, "On the difficulty of training recurrent neural networks", Algorithm 1.

    Args:
        max_norm: ``c``, a finite float > 0.

    Returns:
        An `Optimizer` whose state is `ClipByGlobalNormState`.

    Example:
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
    return Optimizer(
        bind(_stateless_init, name, ClipByGlobalNormState), bind(_global_norm_update, max_norm)
    )


def _global_norm_update(
    max_norm: float, grads: Updates, state: ClipByGlobalNormState, params: Params | None = None
) -> tuple[Updates, ClipByGlobalNormState]:
    check_grads("clip_by_global_norm", grads, None, params)
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return grads, state
    wide = max((jnp.result_type(g) for g in leaves), key=lambda d: d.itemsize)
    if wide.itemsize < 4:
        wide = jnp.dtype(jnp.float32)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(wide))) for g in leaves))
    factor = max_norm / jnp.maximum(norm, max_norm)
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), grads), state


# --- decoupled weight decay -------------------------------------------------------------------


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

    Example:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax import DenseParams
        >>> from nnrs_jax.optim import matrices_only
        >>> matrices_only([DenseParams(w=jnp.ones((3, 2)), b=jnp.ones(2))])
        [DenseParams(w=True, b=False)]
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def add_decayed_weights(rate: float, mask: Mask | MaskFn | None = None) -> Optimizer:
    r"""Add ``rate·params`` to the updates: decoupled weight decay.

    .. math::

        u = g + \lambda \, p \quad\text{where the mask is true,}\qquad u = g \quad\text{elsewhere}

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

    Example:
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
    return Optimizer(
        bind(_stateless_init, name, AddDecayedWeightsState), bind(_decay_update, rate, mask)
    )


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
    check_grads(name, grads, None, params)
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


def _check_bool(name: str, arg: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: {arg} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)
