"""Flax + Optax with a whole epoch inside one jitted ``lax.scan``, as a tuned Flax user writes it.

The same model, optimizer and objective as `bench_flax`; only the loop differs: the permutation
and every batch's gather and step run on the device in one compiled call per epoch, like
`nnrs_jax.fit`, so the ratio to nnrs_jax measures the libraries, not the loop.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_flax import _accuracy, _setup, train_step
from harness import BATCH, WARM_EPOCHS, Settings

__all__ = ["epoch"]


@functools.partial(jax.jit, donate_argnums=(0,))
def _epoch(state, x: jax.Array, y: jax.Array, key: jax.Array):
    n_batches = x.shape[0] // BATCH
    order = jax.random.permutation(key, x.shape[0])[: n_batches * BATCH]

    def body(state, idx):
        return train_step(state, x[idx], y[idx])

    state, losses = jax.lax.scan(body, state, order.reshape(n_batches, BATCH))
    return state, jnp.mean(losses)


def epoch(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """Shuffled epochs, each one ``lax.scan``: the first (compile included), then the median."""
    state, x, y = _setup(x, y)
    times = []
    for e in range(1 + WARM_EPOCHS):
        start = time.perf_counter()
        state, loss = _epoch(state, x, y, jax.random.key(e + 1))
        float(loss)
        times.append(time.perf_counter() - start)
    n_batches = x.shape[0] // BATCH
    return {
        "first_epoch_s": times[0],
        "epoch_s": float(np.median(times[1:])),
        "step_ms": 1000.0 * float(np.median(times[1:])) / n_batches,
        "accuracy": _accuracy(state, x, y),
    }
