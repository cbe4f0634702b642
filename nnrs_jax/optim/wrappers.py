"""Wrappers around a whole optimizer: `ema` of the parameters and gradient `accumulate`-ion.

Each wrapper is an `Optimizer` whose state holds the wrapped optimizer's state (``inner``) and
its own arrays, so a checkpoint of the optimizer state saves the average and the partial sums
too. Their ``timestep`` counts every call of ``update``, i.e. every training step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_int, check_probability
from nnrs_jax.optim.base import (
    Optimizer,
    OptState,
    Params,
    Updates,
    apply_updates,
    bias_correction,
    bind,
    check_floating,
    check_gradient_tree,
    zero_timestep,
    zeros_like_params,
)

__all__ = ["AccumulateState", "EmaState", "accumulate", "ema", "ema_params"]


def _check_optimizer(name: str, optimizer: Any) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{name}: optimizer must be an Optimizer (init and update functions), "
            f"got {type(optimizer).__name__}"
        )


# --- exponential moving average of the parameters ---------------------------------------------


class EmaState(NamedTuple):
    """State of `ema`.

    Attributes:
        timestep: int32 scalar, the number of updates taken so far.
        average: the bias-corrected moving average of the params; tree, shapes and dtypes of
            the params (the initial params before the first update). Read it with `ema_params`.
        inner: the wrapped optimizer's state.
    """

    timestep: jax.Array
    average: Params
    inner: OptState


def ema(optimizer: Optimizer, decay: float) -> Optimizer:
    r"""Keep an exponential moving average of the parameters beside ``optimizer``.

    The updates are ``optimizer``'s, unchanged. With ``p_i`` the params after the ``i``-th
    update (``params + updates``), the state holds the bias-corrected average

    $$
    \hat a_t = \frac{\sum_{i=1}^{t} (1 - d)\, d^{\,t-i}\, p_i}{1 - d^t},
    \qquad\text{updated as}\qquad
    \hat a_t = \hat a_{t-1} + \frac{1 - d}{1 - d^t}\,(p_t - \hat a_{t-1})
    $$

    which equals the zero-initialised average ``a_t = d·a_{t-1} + (1 - d)·p_t`` divided by
    ``1 - d^t`` (Adam's bias correction), so ``â_1 = p_1`` and early averages are not pulled
    towards 0. Before the first update the average is a copy of the initial params. Evaluate
    with ``ema_params(state)`` instead of the trained params: averaging the iterates smooths
    the noise of the last steps. Wrap the complete optimizer (the average needs the final
    updates); with `accumulate`, wrap ``ema`` inside it, ``accumulate(ema(opt, d), every=k)``,
    to average the params after each applied update only. References: Polyak & Juditsky 1992,
    "Acceleration of stochastic approximation by averaging"; Kingma & Ba 2015, section 3, for
    the bias correction.

    Args:
        optimizer: the optimizer whose params are averaged.
        decay: ``d``, with ``0 <= d < 1`` (e.g. 0.999; 0 keeps the latest params).

    Returns:
        An `Optimizer` whose state is `EmaState`. Its ``update`` needs ``params``.

    Examples:
        >>> import jax.numpy as jnp, numpy as np
        >>> from nnrs_jax.optim import apply_updates, ema, ema_params, sgd
        >>> opt = ema(sgd(1.0), decay=0.5)
        >>> params = {"x": jnp.array([0.0], jnp.float32)}
        >>> state = opt.init(params)
        >>> for _ in range(2):  # params 1, then 2
        ...     updates, state = opt.update({"x": jnp.array([-1.0], jnp.float32)}, state, params)
        ...     params = apply_updates(params, updates)
        >>> np.round(np.asarray(ema_params(state)["x"], np.float64), 5)  # (0.25·1 + 0.5·2)/0.75
        array([1.66667])
    """
    _check_optimizer("ema", optimizer)
    decay = check_probability("ema", "decay", decay)
    return Optimizer(bind(_ema_init, optimizer), bind(_ema_update, optimizer, decay))


def _ema_init(optimizer: Optimizer, params: Params) -> EmaState:
    check_floating("ema", params)
    return EmaState(
        timestep=zero_timestep(),
        average=jax.tree.map(jnp.copy, params),
        inner=optimizer.init(params),
    )


def _ema_update(
    optimizer: Optimizer,
    decay: float,
    grads: Updates,
    state: EmaState,
    params: Params | None = None,
) -> tuple[Updates, EmaState]:
    if params is None:
        raise ValueError("ema: update needs params (the average is of params + updates), got None")
    check_gradient_tree("ema", grads, state.average, params)
    updates, inner = optimizer.update(grads, state.inner, params)
    t = state.timestep + 1

    def rule(a: jax.Array, p: jax.Array) -> jax.Array:
        weight = (1.0 - decay) / bias_correction(decay, t, a.dtype)
        return a + weight * (p - a)

    average = jax.tree.map(rule, state.average, apply_updates(params, updates))
    return updates, EmaState(timestep=t, average=average, inner=inner)


def ema_params(opt_state: OptState) -> Params:
    """The averaged params held by the `EmaState` inside ``opt_state``.

    ``opt_state`` may be the `EmaState` itself or any tuple or NamedTuple state that holds
    exactly one (e.g. ``accumulate(ema(opt, d), every=k)``'s state); under ``vmap`` (e.g. from
    ``fit_many``) the average keeps its leading model axis.

    Raises:
        ValueError: if ``opt_state`` holds no `EmaState`, or more than one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import adam, ema, ema_params
        >>> state = ema(adam(0.1), decay=0.9).init({"x": jnp.ones(2, jnp.float32)})
        >>> ema_params(state)["x"]  # the initial params before the first update
        Array([1., 1.], dtype=float32)
    """
    found: list[EmaState] = []

    def visit(node: Any) -> None:
        if isinstance(node, EmaState):
            found.append(node)
        elif isinstance(node, tuple):
            for child in node:
                visit(child)

    visit(opt_state)
    if len(found) != 1:
        raise ValueError(
            "ema_params: opt_state must hold exactly one EmaState (the state of an optimizer "
            f"wrapped in ema(...)), found {len(found)} in opt_state of type "
            f"{type(opt_state).__name__}"
        )
    return found[0].average


# --- gradient accumulation --------------------------------------------------------------------


class AccumulateState(NamedTuple):
    """State of `accumulate`.

    Attributes:
        timestep: int32 scalar, the number of calls of ``update`` (mini-batches) so far.
        grad_sum: the sum of the gradients since the last applied update; tree, shapes and
            dtypes of the params (zeros after an applied update).
        inner: the wrapped optimizer's state, which advances once every ``every`` calls.
    """

    timestep: jax.Array
    grad_sum: Params
    inner: OptState


def accumulate(optimizer: Optimizer, every: int) -> Optimizer:
    r"""Apply ``optimizer`` once every ``every`` steps, to the mean of the gradients between.

    With ``k = every`` and ``t`` the call count after increment:

    $$
    S \leftarrow S + g_t, \qquad
    u_t = \begin{cases}
    \mathrm{update}(S / k) \text{ and } S \leftarrow 0 & \text{if } k \mid t \\
    0 \text{ (inner state unchanged)} & \text{otherwise}
    \end{cases}
    $$

    For a loss that is a mean over the batch, the mean of the gradients of ``k`` mini-batches of
    size ``B`` is the gradient of their union, a batch of ``k·B``: the params then follow the
    trajectory of ``optimizer`` on the large batch, with the memory of the small one (up to
    rounding). The params given to the inner update are the current ones, which have not
    moved since the last applied update. ``every = 1`` is ``optimizer`` itself. Reference: the
    large-batch equivalence is discussed by Goyal et al. 2017, "Accurate, large minibatch SGD:
    training ImageNet in 1 hour".

    Args:
        optimizer: the optimizer to apply on the accumulated gradient.
        every: ``k``, an int >= 1.

    Returns:
        An `Optimizer` whose state is `AccumulateState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import accumulate, sgd
        >>> opt = accumulate(sgd(1.0), every=2)
        >>> state = opt.init({"x": jnp.zeros(1, jnp.float32)})
        >>> for g in (1.0, 3.0):
        ...     updates, state = opt.update({"x": jnp.array([g], jnp.float32)}, state)
        ...     print(updates["x"], int(state.inner.timestep))
        [0.] 0
        [-2.] 1
    """
    _check_optimizer("accumulate", optimizer)
    every = check_int("accumulate", "every", every, low=1)
    return Optimizer(bind(_accumulate_init, optimizer), bind(_accumulate_update, optimizer, every))


def _accumulate_init(optimizer: Optimizer, params: Params) -> AccumulateState:
    return AccumulateState(
        timestep=zero_timestep(),
        grad_sum=zeros_like_params("accumulate", params),
        inner=optimizer.init(params),
    )


def _accumulate_update(
    optimizer: Optimizer,
    every: int,
    grads: Updates,
    state: AccumulateState,
    params: Params | None = None,
) -> tuple[Updates, AccumulateState]:
    check_gradient_tree("accumulate", grads, state.grad_sum, params)
    t = state.timestep + 1
    total = jax.tree.map(jnp.add, state.grad_sum, grads)
    if every == 1:
        updates, inner = optimizer.update(total, state.inner, params)
        return updates, AccumulateState(timestep=t, grad_sum=state.grad_sum, inner=inner)

    def apply() -> tuple[Updates, OptState, Params]:
        mean = jax.tree.map(lambda s: s / every, total)
        updates, inner = optimizer.update(mean, state.inner, params)
        return updates, inner, jax.tree.map(jnp.zeros_like, total)

    def wait() -> tuple[Updates, OptState, Params]:
        return jax.tree.map(jnp.zeros_like, grads), state.inner, total

    updates, inner, grad_sum = jax.lax.cond(t % every == 0, apply, wait)
    return updates, AccumulateState(timestep=t, grad_sum=grad_sum, inner=inner)
