"""Optimizers with a per-element step size: `rmsprop`, `adam`, `nadam`, `adamax`, `adamw`.

Each is a `chain` of transformations (`nnrs_jax.optim.scaling`, and
`nnrs_jax.optim.weight_decay` for `adamw`) whose tuple of states is kept as one NamedTuple
(``RmspropState``, ``AdamState``), so that ``state.timestep``, ``state.velocity`` and
``state.scaling_factor`` read as before. All rules are element-wise on every leaf; ``g`` is the
gradient, ``t`` the step count after increment (1 on the first update, so the bias corrections
``1 - β^t`` are never 0), ``lr`` the learning rate (a float or a schedule ``lr(t)``). Every
constant is cast to the leaf's dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from nnrs_jax._validate import check_float, check_probability
from nnrs_jax.optim.base import (
    Optimizer,
    Params,
    check_learning_rate,
    check_positive,
    flatten_state,
)
from nnrs_jax.optim.combine import chain
from nnrs_jax.optim.scaling import (
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    check_moments,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_rms,
)
from nnrs_jax.optim.weight_decay import (
    AddDecayedWeightsState,
    Mask,
    MaskFn,
    add_decayed_weights,
)
from nnrs_jax.schedules import Schedule

__all__ = ["AdamState", "RmspropState", "adam", "adamax", "adamw", "nadam", "rmsprop"]


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
    """State of `adam`, `nadam`, `adamax` and `adamw`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far.
        velocity: the first moment ``m`` (running mean of gradients).
        scaling_factor: the second moment ``s`` (running mean of squared gradients) for `adam`,
            `nadam` and `adamw`; the infinity norm ``u`` for `adamax`.

    Both buffers have the tree, shapes and dtypes of the params.
    """

    timestep: jax.Array
    velocity: Params
    scaling_factor: Params


def rmsprop(learning_rate: float | Schedule, decay: float = 0.9, eps: float = 1e-7) -> Optimizer:
    r"""RMSProp: divide the gradient by a running root mean square of recent gradients.

    $$
    s \leftarrow \rho s + (1 - \rho) g^2, \qquad
    p \leftarrow p - \mathrm{lr}(t) \cdot \frac{g}{\sqrt{s + \epsilon}}
    $$

    ``eps`` sits inside the square root. ``s`` starts at 0 and is not bias-corrected, so the
    first update is ``-lr·g/√((1-ρ)·g² + eps) ≈ -lr·sign(g)/√(1-ρ)``. Composition:
    ``rmsprop(lr, ρ, eps) = chain(scale_by_rms(ρ, eps), scale_by_learning_rate(lr))``, its
    states kept as one `RmspropState`. Reference: Tieleman & Hinton 2012, "Lecture 6.5 -
    rmsprop", COURSERA: Neural Networks for Machine Learning.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        decay: ``ρ``, with ``0 <= ρ < 1``.
        eps: ``ε > 0``.

    Returns:
        An `Optimizer` whose state is `RmspropState` (``scaling_factor`` is ``s``).

    Examples:
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
    decay = check_probability(name, "decay", decay)
    eps = check_positive(name, "eps", eps)
    return flatten_state(
        name,
        chain(scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate)),
        RmspropState,
        (ScaleByRmsState, ScaleByLearningRateState),
    )


def _adam_family(
    name: str, direction: Optimizer, direction_state: type, learning_rate: float | Schedule
) -> Optimizer:
    return flatten_state(
        name,
        chain(direction, scale_by_learning_rate(learning_rate)),
        AdamState,
        (direction_state, ScaleByLearningRateState),
    )


def adam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""Adam: momentum on the gradient, scaled by a running RMS, both bias-corrected.

    $$
    m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
    s \leftarrow \beta_2 s + (1 - \beta_2) g^2,

    \hat m = \frac{m}{1 - \beta_1^t}, \qquad \hat s = \frac{s}{1 - \beta_2^t}, \qquad
    p \leftarrow p - \mathrm{lr}(t) \cdot \frac{\hat m}{\sqrt{\hat s} + \epsilon}
    $$

    ``eps`` sits outside the square root, added to ``√ŝ``. The first update is
    ``-lr·g/(|g| + eps) ≈ -lr·sign(g)``. Composition:
    ``adam(lr, β1, β2, eps) = chain(scale_by_adam(β1, β2, eps), scale_by_learning_rate(lr))``,
    its states kept as one `AdamState`. Reference: Kingma & Ba 2015, "Adam: a method for
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

    Examples:
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
    learning_rate = check_learning_rate("adam", learning_rate)
    b1, b2, eps = check_moments("adam", b1, b2, eps)
    return _adam_family("adam", scale_by_adam(b1, b2, eps), ScaleByAdamState, learning_rate)


def nadam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""Nadam: Adam with a Nesterov look-ahead on the first moment.

    With ``m``, ``s``, ``m̂``, ``ŝ`` exactly as in `adam`:

    $$
    p \leftarrow p - \mathrm{lr}(t) \cdot
    \frac{\beta_1 \hat m + (1 - \beta_1) g / (1 - \beta_1^t)}
    {\sqrt{\hat s} + \epsilon}
    $$

    ``eps`` sits outside the square root. The first update is
    ``-lr·(1 + β1)·g/(|g| + eps) ≈ -lr·(1 + β1)·sign(g)``. Composition:
    ``nadam(lr, β1, β2, eps) = chain(scale_by_adam(β1, β2, eps, nesterov=True),
    scale_by_learning_rate(lr))``, its states kept as one `AdamState`. Reference: Dozat 2016,
    "Incorporating Nesterov momentum into Adam", ICLR workshop.

    Note:
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

    Examples:
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
    learning_rate = check_learning_rate("nadam", learning_rate)
    b1, b2, eps = check_moments("nadam", b1, b2, eps)
    direction = scale_by_adam(b1, b2, eps, nesterov=True)
    return _adam_family("nadam", direction, ScaleByAdamState, learning_rate)


def adamax(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> Optimizer:
    r"""AdaMax: Adam with the second moment replaced by an exponentially weighted infinity norm.

    $$
    m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
    u \leftarrow \max(\beta_2 u, |g|), \qquad
    p \leftarrow p - \mathrm{lr}(t) \cdot \frac{m}{(1 - \beta_1^t)(u + \epsilon)}
    $$

    ``u`` needs no bias correction; ``eps`` is added to ``u`` (the paper has none; it guards the
    division where a gradient entry has been 0 since the start). The first update is
    ``-lr·g/(|g| + eps) ≈ -lr·sign(g)``. Composition:
    ``adamax(lr, β1, β2, eps) = chain(scale_by_adamax(β1, β2, eps), scale_by_learning_rate(lr))``,
    its states kept as one `AdamState`. Reference: Kingma & Ba 2015, "Adam: a method for
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

    Examples:
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
    learning_rate = check_learning_rate("adamax", learning_rate)
    b1, b2, eps = check_moments("adamax", b1, b2, eps)
    direction = scale_by_adamax(b1, b2, eps)
    return _adam_family("adamax", direction, ScaleByAdamaxState, learning_rate)


def adamw(
    learning_rate: float | Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-7,
    weight_decay: float = 1e-4,
    mask: Mask | MaskFn | None = None,
) -> Optimizer:
    r"""AdamW: Adam with decoupled weight decay.

    With ``m̂``, ``ŝ`` exactly as in `adam`:

    $$
    p \leftarrow p - \mathrm{lr}(t) \cdot
    \left(\frac{\hat m}{\sqrt{\hat s} + \epsilon} + \lambda p\right)
    $$

    where the mask is true (``λ = 0`` elsewhere). The decay is not divided by ``√ŝ``, unlike an
    L2 penalty in the loss, and it is scaled by the learning rate (as in PyTorch and optax;
    Loshchilov & Hutter write it with a separate schedule multiplier ``η_t``, the same rule
    when ``lr(t)`` carries the schedule). Composition: ``adamw(lr, β1, β2, eps, λ, mask) =
    chain(scale_by_adam(β1, β2, eps), add_decayed_weights(λ, mask), scale_by_learning_rate(lr))``,
    its states kept as one `AdamState`. Reference: Loshchilov & Hutter 2019, "Decoupled weight
    decay regularization", ICLR, Algorithm 2.

    Args:
        learning_rate: a finite float > 0, or a schedule ``t -> lr`` (``t`` = 1 on the first
            update).
        b1: ``β1``, with ``0 <= β1 < 1``.
        b2: ``β2``, with ``0 <= β2 < 1``.
        eps: ``ε > 0``.
        weight_decay: ``λ``, a finite float >= 0.
        mask: which leaves decay, as in `add_decayed_weights`: ``None`` (all), a pytree of
            bools, or a function ``params -> pytree of bools`` such as `matrices_only`.

    Returns:
        An `Optimizer` whose state is `AdamState`. Its ``update`` needs ``params``.

    Examples:
        >>> import jax.numpy as jnp, numpy as np
        >>> from nnrs_jax.optim import adamw, matrices_only
        >>> opt = adamw(0.1, weight_decay=0.5, mask=matrices_only)
        >>> params = {"w": jnp.ones((1, 2), jnp.float32), "b": jnp.ones(2, jnp.float32)}
        >>> updates, state = opt.update(params, opt.init(params), params)  # g = params
        >>> np.round(np.asarray(updates["w"], np.float64), 4)  # -0.1·(1 + 0.5)
        array([[-0.15, -0.15]])
        >>> np.round(np.asarray(updates["b"], np.float64), 4)  # -0.1·1: a vector, not decayed
        array([-0.1, -0.1])
    """
    name = "adamw"
    learning_rate = check_learning_rate(name, learning_rate)
    b1, b2, eps = check_moments(name, b1, b2, eps)
    weight_decay = check_float(name, "weight_decay", weight_decay, low=0.0)
    return flatten_state(
        name,
        chain(
            scale_by_adam(b1, b2, eps),
            add_decayed_weights(weight_decay, mask),
            scale_by_learning_rate(learning_rate),
        ),
        AdamState,
        (ScaleByAdamState, AddDecayedWeightsState, ScaleByLearningRateState),
    )
