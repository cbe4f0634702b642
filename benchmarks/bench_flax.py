"""The Flax + Optax side of the benchmark: ``flax.linen``, a ``TrainState``, a jitted step.

The Python loop over batches around a jitted step is the pattern of the Flax examples. The
optimizer is ``optax.nadam``, whose bias correction differs slightly from ``nnrs_jax.nadam``
(see its docstring); the cost per step is the same.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state
from harness import B1, B2, BATCH, EPS, L1, L2, LR, SIZES, WARM_EPOCHS, Settings, median_ms

__all__ = ["epoch", "first_step", "full"]

# Flax's he_normal draws from a truncated normal; nnrs_jax and PyTorch draw from a normal.
_HE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class MLP(nn.Module):
    """784-64-32-16-10, ELU after each hidden layer."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in SIZES[1:-1]:
            x = nn.elu(nn.Dense(width, kernel_init=_HE)(x))
        return nn.Dense(SIZES[-1], kernel_init=_HE)(x)


def _elastic_net(params) -> jax.Array:
    kernels = [layer["kernel"] for layer in params.values()]
    return sum(L1 * jnp.sum(jnp.abs(w)) + L2 * jnp.sum(w * w) for w in kernels)


@jax.jit
def train_step(state: train_state.TrainState, x: jax.Array, y: jax.Array):
    def objective(params) -> jax.Array:
        logits = state.apply_fn({"params": params}, x)
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return cross_entropy + _elastic_net(params)

    loss, grads = jax.value_and_grad(objective)(state.params)
    return state.apply_gradients(grads=grads), loss


def _setup(x: np.ndarray, y: np.ndarray):
    x, y = jax.block_until_ready((jnp.asarray(x), jnp.asarray(y)))
    model = MLP()
    params = model.init(jax.random.key(0), x[:1])["params"]
    tx = optax.nadam(LR, b1=B1, b2=B2, eps=EPS)
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx), x, y


def _accuracy(state: train_state.TrainState, x: jax.Array, y: jax.Array) -> float:
    logits = state.apply_fn({"params": state.params}, x)
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == y))


def full(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """``full_steps`` full-batch steps, reading the loss back every 10 steps as ``fit`` does."""
    state, x, y = _setup(x, y)
    start = time.perf_counter()
    for i in range(settings.full_steps):
        state, loss = train_step(state, x, y)
        if (i + 1) % 10 == 0 or i + 1 == settings.full_steps:
            float(loss)
    jax.block_until_ready(state)
    total = time.perf_counter() - start
    accuracy = _accuracy(state, x, y)
    laps = []
    for _ in range(settings.steady_steps):
        lap = time.perf_counter()
        state, _ = jax.block_until_ready(train_step(state, x, y))
        laps.append(time.perf_counter() - lap)
    return {"total_s": total, "steady_ms": median_ms(laps), "accuracy": accuracy}


def epoch(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """Shuffled epochs (permute, index, jitted step): the first, then the median warm one."""
    state, x, y = _setup(x, y)
    n_batches = x.shape[0] // BATCH
    times = []
    for e in range(1 + WARM_EPOCHS):
        start = time.perf_counter()
        order = jax.random.permutation(jax.random.key(e + 1), x.shape[0])
        losses = []
        for idx in order[: n_batches * BATCH].reshape(n_batches, BATCH):
            state, loss = train_step(state, x[idx], y[idx])
            losses.append(loss)
        float(jnp.mean(jnp.stack(losses)))
        times.append(time.perf_counter() - start)
    return {
        "first_epoch_s": times[0],
        "epoch_s": float(np.median(times[1:])),
        "step_ms": 1000.0 * float(np.median(times[1:])) / n_batches,
        "accuracy": _accuracy(state, x, y),
    }


def first_step(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """The first full-batch step (trace, compile, run) and the second."""
    state, x, y = _setup(x, y)
    laps = []
    for _ in range(2):
        lap = time.perf_counter()
        state, _ = jax.block_until_ready(train_step(state, x, y))
        laps.append(time.perf_counter() - lap)
    return {"first_step_s": laps[0], "second_step_s": laps[1]}
