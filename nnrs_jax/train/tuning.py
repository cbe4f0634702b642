"""`fit`'s measurement of ``impl="auto"`` layers: every policy timed in the run's own step."""

from __future__ import annotations

import time
from typing import Any

import jax

from nnrs_jax import autotune
from nnrs_jax.layers import conv_kernels
from nnrs_jax.layers.base import Layer, forward
from nnrs_jax.train.epoch import advance
from nnrs_jax.train.state import TrainState, run_keys
from nnrs_jax.train.step import Body

__all__ = ["FAMILIES", "STEPS", "tune_step"]

FAMILIES = {"conv2d": (tuple(conv_kernels.POLICIES), conv_kernels.DEFAULT)}
"""The families `fit` measures: family -> (its policies, its default)."""
STEPS = 4
"""Updates per timed run (one ``lax.scan``); a policy's time is the faster of two runs."""


def tune_step(model: Layer, body: Body, ts: TrainState, x: Any, y: jax.Array, rows: int) -> None:
    """Measure every policy of the sites of ``model`` not yet known on this host; store winners.

    The sites are found by tracing the model's forward pass on one row (nothing runs). Each
    policy is then compiled into ``STEPS`` updates of the training step on the first ``rows``
    examples, inside one ``lax.scan`` as in an epoch, run once to warm up and timed twice (the
    faster kept); a policy whose warm-up already took three times the best time so far is not
    run again. The default policy is timed first.
    Nothing is measured in ``"fixed"`` mode.
    """
    if autotune.mode() == "fixed":
        return
    xb = jax.tree.map(lambda a: a[:rows], x)
    yb = y[:rows]
    example = jax.tree.map(lambda a: a[:1], x)

    def trace() -> None:
        jax.eval_shape(
            lambda p, s, a: forward(model, p, a, state=s, train=True)[0],
            ts.params, ts.state, example,
        )  # fmt: skip

    noise_key = run_keys(ts.key)[2]

    def lower_step() -> jax.stages.Lowered:
        def steps(t: TrainState, xb: Any, yb: jax.Array) -> TrainState:
            return jax.lax.scan(
                lambda t, _: advance(body, t, xb, yb, noise_key), t, None, length=STEPS
            )[0]

        return jax.jit(steps).lower(ts, xb, yb)

    best = [float("inf")]

    def time_step(compiled: jax.stages.Compiled) -> float:
        start = time.perf_counter()
        jax.block_until_ready(compiled(ts, xb, yb))
        elapsed = time.perf_counter() - start
        if elapsed < 3 * best[0]:
            for _ in range(2):
                start = time.perf_counter()
                jax.block_until_ready(compiled(ts, xb, yb))
                elapsed = min(elapsed, time.perf_counter() - start)
        best[0] = min(best[0], elapsed)
        return elapsed / STEPS

    autotune.tune(FAMILIES, trace, lower_step, time_step)
