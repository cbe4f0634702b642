"""`fit`'s measurement of ``impl="auto"`` layers: every policy timed in the run's own step."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax

from nnrs_jax import autotune
from nnrs_jax.layers import conv_kernels
from nnrs_jax.layers.base import Layer, forward
from nnrs_jax.train.epoch import advance
from nnrs_jax.train.state import TrainState, run_keys
from nnrs_jax.train.step import Body

__all__ = ["SAMPLE_S", "STEPS", "families", "tune_step"]


def families() -> dict[str, tuple[tuple[str, ...], str]]:
    """The families `fit` measures: family -> (its policies, its default on this backend)."""
    return {"conv2d": (tuple(conv_kernels.POLICIES), conv_kernels.default_policy())}


STEPS = 4
"""Updates per compiled run (one ``lax.scan``)."""
SAMPLE_S = 0.025
"""A time sample repeats the run until it has lasted this long (seconds)."""


def tune_step(model: Layer, body: Body, ts: TrainState, x: Any, y: jax.Array, rows: int) -> None:
    """Measure every policy of the sites of ``model`` not yet known on this host; store winners.

    The sites are found by tracing the model's forward pass on one row (nothing runs). Each
    policy is then compiled into ``STEPS`` updates of the training step on the first ``rows``
    examples, inside one ``lax.scan`` as in an epoch. A time sample repeats that run for at
    least `SAMPLE_S`; the policies take turns, a warm-up sample each and `autotune.ROUNDS`
    timed rounds, and each keeps its fastest. Nothing is measured in ``"fixed"`` mode.
    """
    if autotune.mode() == "fixed":
        return
    # Shapes only: slicing a row, like any op run eagerly, would compile a program of its own.
    example = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), x)

    @functools.cache
    def batch() -> tuple[Any, jax.Array]:
        """The first ``rows`` examples, cut only when something is measured: most `fit` calls
        (a model without ``impl="auto"`` layers, or with every site known) never need them,
        and in full batch they are a copy of all of ``x``."""
        return jax.tree.map(lambda a: a[:rows], x), y[:rows]

    def trace() -> None:
        jax.eval_shape(
            lambda p, s, a: forward(model, p, a, state=s, train=True)[0],
            ts.params, ts.state, example,
        )  # fmt: skip

    def lower_step() -> jax.stages.Lowered:
        noise_key = run_keys(ts.key)[2]

        def steps(t: TrainState, xb: Any, yb: jax.Array) -> TrainState:
            return jax.lax.scan(
                lambda t, _: advance(body, t, xb, yb, noise_key), t, None, length=STEPS
            )[0]

        return jax.jit(steps).lower(ts, *batch())

    def time_step(compiled: jax.stages.Compiled) -> float:
        calls, total = 0, 0.0
        while total < SAMPLE_S:
            start = time.perf_counter()
            jax.block_until_ready(compiled(ts, *batch()))
            total += time.perf_counter() - start
            calls += 1
        return total / (calls * STEPS)

    autotune.tune(families(), trace, lower_step, time_step)
