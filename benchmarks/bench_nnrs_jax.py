"""The nnrs_jax side of the benchmark: `fit` and `make_train_step`, as the README shows them."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from harness import B1, B2, BATCH, EPS, L1, L2, LR, WARM_EPOCHS, Settings, median_ms

import nnrs_jax as nj
from nnrs_jax.train.step import step_body

__all__ = ["epoch", "first_step", "full", "vmap"]


def _reference() -> tuple[nj.Layer, nj.Optimizer]:
    en = nj.elastic_net(L1, L2)
    model = nj.serial(
        nj.dense(784, 64, init="he", regularizer=en),
        nj.elu(1.0),
        nj.dense(64, 32, init="he", regularizer=en),
        nj.elu(1.0),
        nj.dense(32, 16, init="he", regularizer=en),
        nj.elu(1.0),
        nj.dense(16, 10, init="he", regularizer=en),
    )
    return model, nj.nadam(LR, B1, B2, EPS)


def _on_device(x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
    # device_put uses the harness's aligned arrays in place on the CPU (jnp.asarray copies).
    return jax.block_until_ready((jax.device_put(x), jax.device_put(y)))


def _setup(x: np.ndarray, y: np.ndarray):
    """The reference model, its optimizer, their initial states and the data on the device.

    Initialization stays outside the timings, as in the other frameworks.
    """
    model, opt = _reference()
    params = model.init(jax.random.key(0))
    return model, opt, params, opt.init(params), *_on_device(x, y)


def _accuracy(model: nj.Layer, params, x: jax.Array, y: jax.Array) -> float:
    return float(jnp.mean(jnp.argmax(model.apply(params, x), axis=-1) == y))


def _steady_ms(step, params, state, inputs, y: jax.Array, steps: int) -> float:
    """Median time of ``steps`` warm steps, each timed alone until its results are ready."""
    params, state, _ = step(params, state, inputs, y)
    laps = []
    for _ in range(steps):
        lap = time.perf_counter()
        params, state, _ = jax.block_until_ready(step(params, state, inputs, y))
        laps.append(time.perf_counter() - lap)
    return median_ms(laps)


def _timed_fit(
    x: np.ndarray, y: np.ndarray, **length: int
) -> tuple[nj.Layer, nj.Optimizer, jax.Array, jax.Array, nj.FitResult, float]:
    """`_setup`, then ``fit`` from its initial states for ``length`` (``steps=`` or ``epochs=``
    and ``batch_size=``), timed with its compilation until the params are ready.

    Returns ``(model, opt, x, y, result, seconds)``, ``x`` and ``y`` on the device.
    """
    model, opt, params, state, x, y = _setup(x, y)
    start = time.perf_counter()
    result = nj.fit(model, nj.cross_entropy, opt, x, y, key=jax.random.key(0), params=params,
                    opt_state=state, progress=False, **length)  # fmt: skip
    jax.block_until_ready(result.params)
    return model, opt, x, y, result, time.perf_counter() - start


def full(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """``fit`` for ``full_steps`` full-batch steps, compile included, then the steady step."""
    model, opt, x, y, result, total = _timed_fit(x, y, steps=settings.full_steps)
    accuracy = _accuracy(model, result.params, x, y)
    # The steady step is timed on the same step body, fed the same prepared input (dense's
    # Pretransposed copy) as fit feeds it; fit's own copy is freed when it returns.
    step = nj.make_train_step(model, nj.cross_entropy, opt)
    inputs = model.prepare(x)
    steady = _steady_ms(step, result.params, result.opt_state, inputs, y, settings.steady_steps)
    return {"total_s": total, "steady_ms": steady, "accuracy": accuracy}


def epoch(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """One shuffled mini-batch epoch with ``fit`` (compile included), then the median warm epoch."""
    model, opt, x, y, result, first = _timed_fit(x, y, epochs=1, batch_size=BATCH)
    # The warm epochs are timed on the compiled epoch fit runs (one lax.scan over the batches,
    # nj.make_epoch): called once to compile, then timed.
    run_epoch = nj.make_epoch(model, nj.cross_entropy, opt, batch_size=BATCH)
    train_state, _ = run_epoch(result.train_state, x, y)
    laps = []
    for _ in range(WARM_EPOCHS):
        start = time.perf_counter()
        train_state, _ = jax.block_until_ready(run_epoch(train_state, x, y))
        laps.append(time.perf_counter() - start)
    params = train_state.params
    second = float(np.median(laps))
    return {
        "first_epoch_s": first,
        "epoch_s": second,
        "step_ms": 1000.0 * second / (x.shape[0] // BATCH),
        "accuracy": _accuracy(model, params, x, y),
    }


def first_step(
    x: np.ndarray, y: np.ndarray, settings: Settings, cache_dir: str | None = None
) -> dict[str, float]:
    """The first full-batch ``make_train_step`` call (trace, compile, run) and the second.

    With ``cache_dir``, `nnrs_jax.enable_compilation_cache` keeps every compilation there.
    """
    if cache_dir is not None:
        nj.enable_compilation_cache(cache_dir)
    model, opt, params, state, x, y = _setup(x, y)
    step = nj.make_train_step(model, nj.cross_entropy, opt)
    laps = []
    for _ in range(2):
        lap = time.perf_counter()
        params, state, _ = jax.block_until_ready(step(params, state, x, y))
        laps.append(time.perf_counter() - lap)
    return {"first_step_s": laps[0], "second_step_s": laps[1]}


def vmap(x: np.ndarray, y: np.ndarray, settings: Settings, models: int = 1) -> dict[str, float]:
    """``vmap_steps`` full-batch steps of ``models`` models, init and compile included.

    One model trains with `nnrs_jax.fit`, several with `nnrs_jax.fit_many` (one init key each,
    the step vmapped, the data shared); then the steady step of the same vmapped step body.
    """
    model, opt = _reference()
    x, y = _on_device(x, y)
    key, steps = jax.random.key(0), settings.vmap_steps
    start = time.perf_counter()
    if models == 1:
        result = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, steps=steps, progress=False)
    else:
        result = nj.fit_many(
            model,
            nj.cross_entropy,
            opt,
            x,
            y,
            key=key,
            num_models=models,
            steps=steps,
            progress=False,
        )
    jax.block_until_ready(result.params)
    total = time.perf_counter() - start

    body = step_body(model, nj.cross_entropy, opt, "manual")

    def one(params, opt_state, x, y):
        params, _, opt_state, metrics = body(params, None, opt_state, x, y, None)
        return params, opt_state, metrics

    step = jax.jit(one if models == 1 else jax.vmap(one, in_axes=(0, 0, None, None)),
                   donate_argnums=(0, 1))  # fmt: skip
    apply = model.apply if models == 1 else jax.vmap(model.apply, in_axes=(0, None))
    accuracies = jnp.atleast_1d(jnp.mean(jnp.argmax(apply(result.params, x), axis=-1) == y, -1))
    inputs = model.prepare(x)
    steady = _steady_ms(step, result.params, result.opt_state, inputs, y, settings.steady_steps)
    return {
        "total_s": total,
        "steady_ms": steady,
        "accuracy": float(jnp.mean(accuracies)),
        "accuracy_spread": float(jnp.max(accuracies) - jnp.min(accuracies)),
    }
