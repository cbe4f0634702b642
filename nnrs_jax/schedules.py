"""Learning-rate schedules: pure functions ``t -> lr``, evaluated inside the jitted update.

Convention: ``t`` is the optimizer's ``timestep`` after it has been incremented, so the first
update calls ``schedule(1)``, the n-th ``schedule(n)``; ``schedule(0)`` is never used by an
optimizer. ``t`` may be a Python int or an integer array of any shape (the result has its shape,
so ``schedule(jnp.arange(1, 101))`` tabulates the first 100 steps); the result is computed and
returned in ``dtype`` (float32 unless asked otherwise). Every formula below is exact for the
returned value up to rounding in ``dtype``.

Arguments are checked when the schedule is built: NumPy scalars are accepted wherever a Python
number is; a wrong type raises `TypeError`, a value out of range (``inf`` and ``NaN`` included)
`ValueError`, naming the function and the argument.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from nnrs_jax._validate import check_bool, check_float, check_int

__all__ = ["Schedule", "constant", "cosine_decay", "exponential_decay", "warmup_cosine_decay"]

Schedule = Callable[[ArrayLike], jax.Array]
"""A learning-rate schedule: ``lr = schedule(t)``, ``t`` the update count (1 on the first).

A jittable function of an integer array; optimizers call it inside the compiled step, so a
schedule never recompiles."""


def _dtype(name: str, dtype: DTypeLike) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: dtype must be a floating dtype, got {dtype}")
    return dtype


def _as(t: ArrayLike, dtype: jnp.dtype) -> jax.Array:
    return jnp.asarray(t).astype(dtype)


def constant(value: float, *, dtype: DTypeLike = jnp.float32) -> Schedule:
    """``lr(t) = value`` for every ``t``.

    Args:
        value: a finite float > 0.
        dtype: the floating dtype of the result.

    Examples:
        >>> from nnrs_jax.schedules import constant
        >>> float(constant(0.5)(7))
        0.5
    """
    value = check_float("constant", "value", value, low=0.0, low_open=True)
    dtype = _dtype("constant", dtype)

    def schedule(t: ArrayLike) -> jax.Array:
        return jnp.full(jnp.shape(t), value, dtype)

    return schedule


def exponential_decay(
    init_value: float,
    decay_rate: float,
    transition_steps: int,
    staircase: bool = False,
    end_value: float | None = None,
    *,
    dtype: DTypeLike = jnp.float32,
) -> Schedule:
    """``lr(t) = init_value · decay_rate^(t / transition_steps)``.

    With ``staircase``, the exponent is ``floor(t / transition_steps)``, so the rate drops once
    every ``transition_steps`` updates. With ``end_value``, the result is clipped: from below at
    ``end_value`` when ``decay_rate < 1``, from above when ``decay_rate > 1``. Note that
    ``lr(1) = init_value · decay_rate^(1 / transition_steps)``: the first update already sees one
    step of decay (``lr(0) = init_value``).

    Args:
        init_value: a finite float > 0.
        decay_rate: a finite float > 0 (< 1 decays, > 1 grows).
        transition_steps: an int >= 1, the number of steps per factor of ``decay_rate``.
        staircase: use an integer exponent.
        end_value: ``None``, or a finite float > 0 on the far side of ``init_value`` (at most
            ``init_value`` when decaying, at least when growing).
        dtype: the floating dtype of the result.

    Examples:
        >>> from nnrs_jax.schedules import exponential_decay
        >>> schedule = exponential_decay(0.1, 0.5, transition_steps=10)
        >>> round(float(schedule(10)), 6), round(float(schedule(20)), 6)
        (0.05, 0.025)
    """
    name = "exponential_decay"
    init_value = check_float(name, "init_value", init_value, low=0.0, low_open=True)
    decay_rate = check_float(name, "decay_rate", decay_rate, low=0.0, low_open=True)
    transition_steps = check_int(name, "transition_steps", transition_steps, low=1)
    staircase = check_bool(name, "staircase", staircase)
    dtype = _dtype(name, dtype)
    if end_value is not None:
        end_value = check_float(name, "end_value", end_value, low=0.0, low_open=True)
        if (decay_rate < 1 and end_value > init_value) or (
            decay_rate > 1 and end_value < init_value
        ):
            raise ValueError(
                f"{name}: end_value must lie between init_value and the limit of the decay: "
                f"got end_value={end_value!r}, init_value={init_value!r}, "
                f"decay_rate={decay_rate!r}"
            )

    def schedule(t: ArrayLike) -> jax.Array:
        exponent = _as(t, dtype) / transition_steps
        if staircase:
            exponent = jnp.floor(exponent)
        value = init_value * jnp.asarray(decay_rate, dtype) ** exponent
        if end_value is None:
            return value
        clip = jnp.maximum if decay_rate < 1 else jnp.minimum
        return clip(value, jnp.asarray(end_value, dtype))

    return schedule


def cosine_decay(
    init_value: float, decay_steps: int, alpha: float = 0.0, *, dtype: DTypeLike = jnp.float32
) -> Schedule:
    r"""Half a cosine from ``init_value`` down to ``alpha · init_value`` over ``decay_steps``.

    $$
    \mathrm{lr}(t) = \mathrm{init} \cdot \left((1 - \alpha) \cdot
    \tfrac12 \left(1 + \cos\frac{\pi \min(t, T)}{T}\right) + \alpha\right),
    \qquad T = \mathrm{decay\_steps}
    $$

    so ``lr(T) = alpha · init_value``, constant afterwards. Reference: Loshchilov & Hutter 2017,
    "SGDR: stochastic gradient descent with warm restarts" (one cycle, no restart).

    Args:
        init_value: a finite float > 0.
        decay_steps: ``T``, an int >= 1.
        alpha: the final value as a fraction of ``init_value``, ``0 <= alpha <= 1``.
        dtype: the floating dtype of the result.

    Examples:
        >>> from nnrs_jax.schedules import cosine_decay
        >>> schedule = cosine_decay(0.1, decay_steps=100)
        >>> round(float(schedule(50)), 6), float(schedule(100)), float(schedule(500))
        (0.05, 0.0, 0.0)
    """
    name = "cosine_decay"
    init_value = check_float(name, "init_value", init_value, low=0.0, low_open=True)
    decay_steps = check_int(name, "decay_steps", decay_steps, low=1)
    alpha = check_float(name, "alpha", alpha, low=0.0, high=1.0)
    dtype = _dtype(name, dtype)

    def schedule(t: ArrayLike) -> jax.Array:
        fraction = jnp.minimum(_as(t, dtype), decay_steps) / decay_steps
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))
        return init_value * ((1.0 - alpha) * cosine + alpha)

    return schedule


def warmup_cosine_decay(
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    init_value: float = 0.0,
    end_value: float = 0.0,
    *,
    dtype: DTypeLike = jnp.float32,
) -> Schedule:
    r"""Linear warmup from ``init_value`` to ``peak_value``, then a half cosine to ``end_value``.

    With ``W = warmup_steps`` and ``T = decay_steps`` (the total length, warmup included):

    $$
    \mathrm{lr}(t) = \begin{cases}
    \mathrm{init} + (\mathrm{peak} - \mathrm{init}) \cdot t / W & t < W \\
    \mathrm{end} + (\mathrm{peak} - \mathrm{end}) \cdot
    \tfrac12 \left(1 + \cos\frac{\pi \min(t - W,\, T - W)}{T - W}\right) & t \ge W
    \end{cases}
    $$

    so ``lr(W) = peak_value``, ``lr(T) = end_value`` and constant afterwards. With the ``t = 1``
    convention the first update already uses ``init + (peak - init) / W``, never ``init_value``
    itself. ``W = 0`` means no warmup. Reference: Goyal et al. 2017, "Accurate, large minibatch
    SGD" (warmup); Loshchilov & Hutter 2017 (cosine).

    Args:
        peak_value: a finite float > 0.
        warmup_steps: ``W``, an int >= 0.
        decay_steps: ``T``, an int > ``W``.
        init_value: the value at ``t = 0``, a finite float >= 0.
        end_value: the value from ``t = T`` on, a finite float >= 0.
        dtype: the floating dtype of the result.

    Examples:
        >>> from nnrs_jax.schedules import warmup_cosine_decay
        >>> schedule = warmup_cosine_decay(1.0, warmup_steps=10, decay_steps=110)
        >>> [round(float(schedule(t)), 6) for t in (1, 10, 60, 110)]
        [0.1, 1.0, 0.5, 0.0]
    """
    name = "warmup_cosine_decay"
    peak_value = check_float(name, "peak_value", peak_value, low=0.0, low_open=True)
    warmup_steps = check_int(name, "warmup_steps", warmup_steps, low=0)
    decay_steps = check_int(name, "decay_steps", decay_steps, low=1)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"{name}: decay_steps (the total length) must be > warmup_steps, got "
            f"decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}"
        )
    init_value = check_float(name, "init_value", init_value, low=0.0)
    end_value = check_float(name, "end_value", end_value, low=0.0)
    dtype = _dtype(name, dtype)
    cosine_steps = decay_steps - warmup_steps

    def schedule(t: ArrayLike) -> jax.Array:
        t = _as(t, dtype)
        # max(W, 1) only avoids 0/0 when W = 0, where the warmup branch is never selected.
        warmup = init_value + (peak_value - init_value) * (t / max(warmup_steps, 1))
        fraction = jnp.clip(t - warmup_steps, 0, cosine_steps) / cosine_steps
        cosine = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))
        return jnp.where(t < warmup_steps, warmup, cosine)

    return schedule
