"""Compiled training chunks over a `TrainState`: one step, or a whole epoch in ``lax.scan``.

`make_epoch` is the public level below `fit`: a jitted ``epoch(train_state, x, y) ->
(train_state, metrics)`` that shuffles, gathers every batch on the device and runs every step
of the epoch in one ``lax.scan``, with the same keys as `fit`, so that a loop of your own over
it gives `fit`'s results bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_bool
from nnrs_jax.layers.base import Layer, PRNGKey, check_model
from nnrs_jax.losses import Loss
from nnrs_jax.optim import Optimizer
from nnrs_jax.train.state import TrainState, run_keys
from nnrs_jax.train.step import (
    Augment,
    Body,
    MetricFn,
    check_augment,
    check_grads_mode,
    metric_items,
    step_body,
)

__all__ = ["make_epoch"]


def advance(body: Body, ts: TrainState, x: Any, y: jax.Array, noise_key: PRNGKey, hyper: Any = ()):
    """One update; the step's key is ``fold_in(noise_key, step)``, so resuming repeats it.

    ``noise_key`` is ``run_keys(ts.key)[2]``, derived once per compiled chunk, not per step.
    """
    key = jax.random.fold_in(noise_key, ts.step)
    params, state, opt_state, metrics = body(ts.params, ts.state, ts.opt_state, x, y, key, hyper)
    return TrainState(params, state, opt_state, ts.step + 1, ts.key), metrics


@functools.lru_cache(maxsize=64)
def full_step(body: Body, out_shardings: Any = None):
    """A jitted full-batch step over the train state (donated).

    ``out_shardings``: ``None`` on one device; on a mesh, where the state and the metrics go.
    """

    def step(ts: TrainState, x: Any, y: jax.Array, hyper: Any = ()):
        return advance(body, ts, x, y, run_keys(ts.key)[2], hyper)

    return jax.jit(step, donate_argnums=(0,), out_shardings=out_shardings)


def steps_per_epoch(rows: int, batch_size: int, drop_last: bool) -> int:
    """Updates in an epoch of ``rows`` examples: the full batches, and the partial one if kept."""
    return rows // batch_size + (0 if drop_last or rows % batch_size == 0 else 1)


@functools.lru_cache(maxsize=64)
def epoch_fn(body: Body, batch_size: int, drop_last: bool = True, out_shardings: Any = None):
    """A jitted epoch: shuffle, gather each batch inside one ``lax.scan``, then the tail.

    Epoch ``e = step // steps_per_epoch`` shuffles with ``fold_in(data_key, e)``; the partial
    last batch of that permutation is one more step (``drop_last=False``), traced in the same
    compiled function. Metrics have a leading batch axis.
    """

    def epoch(ts: TrainState, x: Any, y: jax.Array, hyper: Any = ()):
        rows = y.shape[0]
        n_batches = rows // batch_size
        per_epoch = steps_per_epoch(rows, batch_size, drop_last)
        _, data_key, noise_key = run_keys(ts.key)
        perm_key = jax.random.fold_in(data_key, ts.step // per_epoch)
        order = jax.random.permutation(perm_key, rows)
        full = order[: n_batches * batch_size].reshape(n_batches, batch_size)

        def scan_body(ts: TrainState, idx: jax.Array):
            return advance(body, ts, x[idx], y[idx], noise_key, hyper)

        ts, metrics = jax.lax.scan(scan_body, ts, full)
        if per_epoch > n_batches:
            tail = order[n_batches * batch_size :]
            ts, last = advance(body, ts, x[tail], y[tail], noise_key, hyper)
            metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), metrics, last)
        return ts, metrics

    return jax.jit(epoch, donate_argnums=(0,), out_shardings=out_shardings)


@functools.lru_cache(maxsize=64)
def fed_epoch_fn(body: Body, out_shardings: Any):
    """A jitted epoch over batches placed beforehand: ``xs`` ``(n_batches, batch, ...)``."""

    def epoch(ts: TrainState, xs: Any, ys: jax.Array):
        noise_key = run_keys(ts.key)[2]

        def scan_body(ts: TrainState, batch: tuple[jax.Array, jax.Array]):
            return advance(body, ts, *batch, noise_key)

        return jax.lax.scan(scan_body, ts, (xs, ys))

    return jax.jit(epoch, donate_argnums=(0,), out_shardings=out_shardings)


def make_epoch(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    *,
    batch_size: int,
    drop_last: bool = True,
    augment: Augment | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    grads: Literal["manual", "autodiff"] = "manual",
):
    """A jitted epoch of mini-batch training: ``epoch(train_state, x, y) -> (train_state, m)``.

    Epoch ``e = train_state.step // steps_per_epoch`` visits the examples in the order
    ``permutation(fold_in(data_key, e), N)``, cut into batches of ``batch_size`` (the partial
    last one dropped unless ``drop_last=False``), gathered on the device inside one
    ``lax.scan``; step ``t`` takes the key ``fold_in(noise_key, t)`` (`run_keys`). These are
    `fit`'s batches and keys: a loop of your own over ``epoch`` gives `fit`'s parameters bit
    for bit. ``m`` holds ``loss`` and the metrics of every batch, shape ``(steps,)``. The train
    state is donated; ``x`` ``(N, ...)`` and ``y`` ``(N,)`` or ``(N, k)`` are best placed on the
    device once (``jax.device_put``). It compiles once per shape.

    Examples:
        >>> import jax, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model, opt = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2)), nj.adam(1e-2)
        >>> epoch = nj.make_epoch(model, nj.cross_entropy, opt, batch_size=16)
        >>> ts = nj.TrainState.create(model, opt, jax.random.key(0))
        >>> for _ in range(3):
        ...     ts, m = epoch(ts, x, y)
        >>> int(ts.step), m["loss"].shape
        (12, (4,))
    """
    model = check_model("make_epoch", model)
    caller = "make_epoch"
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{caller}: batch_size must be an int >= 1, got {batch_size!r}")
    drop_last = check_bool(caller, "drop_last", drop_last)
    body = step_body(
        model, loss, optimizer, check_grads_mode(caller, grads), check_augment(caller, augment),
        metric_items(caller, metrics),
    )  # fmt: skip
    compiled = epoch_fn(body, batch_size, drop_last)

    def epoch(train_state: TrainState, x: Any, y: Any):
        if not isinstance(train_state, TrainState):
            raise TypeError(
                f"{caller}: the epoch's first argument must be a TrainState "
                f"(nj.TrainState.create(model, optimizer, key)), got {type(train_state).__name__}"
            )
        if y.shape[0] < batch_size:
            raise ValueError(
                f"{caller}: batch_size {batch_size} is larger than the {y.shape[0]} examples"
            )
        return compiled(train_state, x, y)

    return epoch
