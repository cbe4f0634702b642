"""Training: one jit-compiled step, whole mini-batch epochs inside ``lax.scan``, and `fit`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from nnrs_jax.layers.base import Layer, Params, Pretransposed
from nnrs_jax.losses import Loss
from nnrs_jax.objective import penalty, value_grad_outputs
from nnrs_jax.optim import Optimizer, apply_updates

__all__ = ["FitResult", "fit", "fit_many", "make_train_step"]

OptState = Any
Metrics = dict[str, jax.Array]
StepFn = Callable[[Params, OptState, jax.Array, jax.Array], tuple[Params, OptState, Metrics]]


def _accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    labels = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    hits = jnp.argmax(outputs, axis=-1).astype(labels.dtype) == labels
    return jnp.mean(hits.astype(outputs.dtype))


@functools.lru_cache(maxsize=64)
def _step_body(model: Layer, loss: Loss, optimizer: Optimizer, grads: str) -> StepFn:
    """The pure (un-jitted) training step shared by `make_train_step` and the epoch scan.

    Cached, like the jitted functions built on it, so that calling `fit` again with the same
    model, loss and optimizer (e.g. to resume) reuses the compiled code instead of retracing.
    """
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"grads must be 'manual' or 'autodiff', got {grads!r}")

    def step(params: Params, opt_state: OptState, x: jax.Array, y: jax.Array):
        if grads == "manual":
            total, g, outputs = value_grad_outputs(model, loss, params, x, y)
        else:

            def objective(p: Params) -> tuple[jax.Array, jax.Array]:
                out = model.apply(p, x)
                return loss.value(out, y) + penalty(model, p), out

            (total, outputs), g = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(g, opt_state, params)
        params = apply_updates(params, updates)
        return params, opt_state, {"loss": total, "accuracy": _accuracy(outputs, y)}

    return step


def make_train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    *,
    grads: Literal["manual", "autodiff"] = "manual",
) -> StepFn:
    """A jitted ``step(params, opt_state, x, y) -> (params, opt_state, metrics)``.

    One step: forward, ``loss + penalty``, gradient, optimizer update. ``grads="manual"``
    (default) uses the hand-written backward passes (`nnrs_jax.loss_and_grad`);
    ``grads="autodiff"`` uses ``jax.value_and_grad`` of the same objective. ``metrics`` is a
    dict with ``loss`` (including penalties, before the update) and ``accuracy`` (fraction of
    ``argmax(outputs)`` equal to the labels). ``params`` and ``opt_state`` are donated: do not
    reuse the arrays you passed in. It compiles once per input shape.

    Example:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 3))
        >>> opt = nj.adam(1e-2)
        >>> params = model.init(jax.random.key(0)); state = opt.init(params)
        >>> step = nj.make_train_step(model, nj.cross_entropy, opt)
        >>> x, y = jnp.ones((16, 4)), jnp.zeros((16,), jnp.int32)
        >>> params, state, metrics = step(params, state, x, y)
        >>> sorted(metrics)
        ['accuracy', 'loss']
    """
    return _jit_step(_step_body(model, loss, optimizer, grads))


@functools.lru_cache(maxsize=64)
def _jit_step(step: StepFn) -> StepFn:
    return jax.jit(step, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=64)
def _make_epoch(step: StepFn, batch_size: int):
    """A jitted epoch: shuffle from ``key``, gather each batch inside one ``lax.scan``."""

    def epoch(params: Params, opt_state: OptState, x: jax.Array, y: jax.Array, key: jax.Array):
        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]

        def body(carry, idx):
            params, opt_state = carry
            params, opt_state, metrics = step(params, opt_state, x[idx], y[idx])
            return (params, opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(
            body, (params, opt_state), order.reshape(n_batches, batch_size)
        )
        return params, opt_state, metrics

    return jax.jit(epoch, donate_argnums=(0, 1))


class FitResult(NamedTuple):
    """What `fit` returns.

    Attributes:
        params: the trained parameters.
        opt_state: the optimizer state; ``opt_state.timestep`` counts the steps taken so far.
        history: NumPy arrays. Full batch: ``step``, ``loss``, ``accuracy`` per step (metrics of
            the params before that step's update, as the seed printed them). Mini-batch:
            ``epoch``, ``loss``, ``accuracy`` per epoch (means over its batches). With
            ``eval_data``: ``eval_step`` or ``eval_epoch``, ``eval_loss``, ``eval_accuracy``.
    """

    params: Params
    opt_state: OptState
    history: dict[str, np.ndarray]


@jax.jit
def _data_stats(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One pass, one compile: are all of x finite, and the range of y."""
    return jnp.all(jnp.isfinite(x)), jnp.min(y), jnp.max(y)


def _validate_data(model: Layer, params: Params, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """Clear errors for bad data before anything is compiled; returns device arrays."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"x must be a (N, features) array, got {getattr(x, 'shape', type(x))}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if getattr(y, "ndim", None) not in (1, 2):
        raise ValueError(f"y must be labels (N,) or targets (N, classes), got {np.shape(y)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("x and y are empty: need at least one example")
    x, y = jax.device_put(x), jax.device_put(y)
    finite, low, high = (int(v) for v in _data_stats(x, y))
    if not finite:
        bad = int(jnp.argmax(~jnp.all(jnp.isfinite(x), axis=1)))
        raise ValueError(f"x contains NaN or inf (first at row {bad})")
    out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, x.shape[1]), x.dtype))
    classes = out.shape[-1]
    if y.ndim == 1:
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(f"labels y must have an integer dtype, got {y.dtype}")
        if low < 0 or high >= classes:
            raise ValueError(
                f"labels y must lie in [0, {classes}) for a model with {classes} outputs, "
                f"got values in [{low}, {high}]"
            )
    elif y.shape[1] != classes:
        raise ValueError(f"targets y must have shape (N, {classes}), got {y.shape}")
    return x, y


class _Log:
    """Collects device metrics, reads them back only at log points, checks they are finite.

    ``per_batch``: each metrics entry has a leading batch axis (an epoch's scan), averaged away.
    """

    def __init__(self, total: int, unit: str, progress: bool, on_nonfinite: str) -> None:
        self.bar = tqdm(total=total, unit=unit, disable=not progress, dynamic_ncols=True)
        self.on_nonfinite = on_nonfinite
        self.pending: list[tuple[int, Metrics]] = []
        self.rows: dict[str, list] = {}

    def add(self, index: int, metrics: Metrics) -> None:
        self.pending.append((index, metrics))

    def flush(self, name: str, first_step: Callable[[int], int], per_batch: bool) -> None:
        for index, metrics in self.pending:
            host = jax.device_get(metrics)
            bad = ~np.isfinite(np.asarray(host["loss"]))
            if bad.any():
                offset = (
                    int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1))) if per_batch else 0
                )
                message = f"non-finite loss at step {first_step(index) + offset}"
                if self.on_nonfinite == "raise":
                    self.bar.close()
                    raise FloatingPointError(message + "; lower the learning rate or check data")
                warnings.warn(message, RuntimeWarning, stacklevel=4)
            reduce = (lambda v: np.mean(v, axis=0)) if per_batch else np.asarray
            self.record(name, index, {k: reduce(v) for k, v in host.items()})
        if self.pending:
            loss, acc = (np.mean(self.rows[k][-1]) for k in ("loss", "accuracy"))
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}")
            self.bar.update(len(self.pending))
        self.pending = []

    def record(self, name: str, index: int, values: dict[str, Any]) -> None:
        for k, v in {name: index, **values}.items():
            self.rows.setdefault(k, []).append(v)

    def history(self) -> dict[str, np.ndarray]:
        self.bar.close()
        return {k: np.asarray(v) for k, v in self.rows.items()}


def _check_mode(steps: Any, epochs: Any, batch_size: Any, log_every: Any, on_nonfinite: Any):
    if batch_size is None:
        if steps is None or epochs is not None:
            raise ValueError("full-batch training (batch_size=None) needs steps=N and no epochs")
        _check_count("steps", steps, minimum=0)
    else:
        if epochs is None or steps is not None:
            raise ValueError("mini-batch training (batch_size=B) needs epochs=E and no steps")
        _check_count("epochs", epochs, minimum=0)
        _check_count("batch_size", batch_size, minimum=1)
    _check_count("log_every", log_every, minimum=1)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")


def fit(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    *,
    key: jax.Array,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    params: Params | None = None,
    opt_state: OptState | None = None,
    eval_data: tuple[Any, Any] | None = None,
    log_every: int = 10,
    progress: bool = True,
    grads: Literal["manual", "autodiff"] = "manual",
    drop_last: bool = True,
    on_nonfinite: Literal["raise", "warn"] = "raise",
) -> FitResult:
    """Train ``model`` on ``(x, y)``: full-batch steps or shuffled mini-batch epochs.

    * ``batch_size=None``: ``steps`` full-batch gradient steps (the seed's mode), one jitted
      step each; metrics are read back every ``log_every`` steps. With ``grads="manual"`` the
      input gets one transposed copy (`Pretransposed`) for a faster first ``dW``.
    * ``batch_size=B``: ``epochs`` epochs; each is one jitted ``lax.scan`` over the batches of a
      permutation drawn from ``fold_in(key, epoch)``, gathered on the device. The partial last
      batch is dropped unless ``drop_last=False`` (then it is one extra, separately compiled step).

    ``params``/``opt_state`` continue a previous run (they are copied, never donated): with the
    same ``key`` and data, N steps, a save/load, and N more equal 2N steps straight, bit for bit,
    because the epoch index comes from ``opt_state.timestep``. The data is moved to the device
    once. A non-finite loss stops training with `FloatingPointError` naming the step
    (``on_nonfinite="warn"`` only warns). Bad data raises before anything is compiled.

    Args:
        model, loss, optimizer: what to train.
        x: ``(N, features)`` floats; y: integer labels ``(N,)`` or targets ``(N, classes)``.
        key: PRNG key for init (when ``params`` is None) and shuffling.
        eval_data: optional ``(x_eval, y_eval)`` evaluated at each log point / epoch.
        progress: show a progress bar (stderr) with loss and accuracy.
        grads: ``"manual"`` (hand-written backward) or ``"autodiff"``.

    Example:
        >>> import jax, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
        >>> result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y,
        ...                 key=jax.random.key(0), steps=50, progress=False)
        >>> bool(result.history["accuracy"][-1] > 0.9)
        True
    """
    _check_mode(steps, epochs, batch_size, log_every, on_nonfinite)
    init_key, data_key = jax.random.split(key)
    params = jax.jit(model.init)(init_key) if params is None else jax.tree.map(jnp.copy, params)
    opt_state = optimizer.init(params) if opt_state is None else jax.tree.map(jnp.copy, opt_state)
    x, y = _validate_data(model, params, x, y)
    evaluate = None
    if eval_data is not None:
        evaluate = _make_eval(model, loss, *_validate_data(model, params, *eval_data))
    x = _full_batch_input(x, batch_size, grads)
    step = _step_body(model, loss, optimizer, grads)
    return _run(step, params, opt_state, x, y, data_key, int(opt_state.timestep), steps, epochs,
                batch_size, drop_last, log_every, progress, on_nonfinite, evaluate)  # fmt: skip


def fit_many(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer | Callable[[jax.Array], Optimizer],
    x: Any,
    y: Any,
    *,
    key: jax.Array,
    num_models: int | None = None,
    hparams: Any = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    log_every: int = 10,
    progress: bool = True,
    grads: Literal["manual", "autodiff"] = "manual",
    on_nonfinite: Literal["raise", "warn"] = "raise",
) -> FitResult:
    """Train several models at once with ``jax.vmap``: different seeds and/or hyperparameters.

    Model ``i`` starts from ``model.init(split(key, n)[i])``; all models see the same data in
    the same order (a fair comparison). With ``hparams`` (an array with a leading axis of size
    ``n``), ``optimizer`` is a function ``hparam -> Optimizer`` traced once per model, e.g.
    ``lambda lr: nj.nadam(lr)`` over ``hparams=jnp.array([1e-3, 3e-3, 1e-2])``; otherwise one
    optimizer is shared and ``num_models`` says how many seeds. The compiled step is the vmapped
    step of `fit`, so ``n`` models cost far less than ``n`` separate runs.

    Returns:
        A `FitResult` whose params, opt_state and history leaves have a leading model axis
        (``history["loss"]`` is ``(steps or epochs, n)``).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
        >>> result = nj.fit_many(model, nj.cross_entropy, lambda lr: nj.adam(lr), x, y,
        ...                      key=jax.random.key(0), hparams=jnp.array([1e-3, 1e-2]),
        ...                      steps=20, progress=False)
        >>> result.history["loss"].shape, result.params[0].w.shape
        ((20, 2), (2, 4, 8))
    """
    _check_mode(steps, epochs, batch_size, log_every, on_nonfinite)
    if hparams is None:
        _check_count("num_models", num_models, minimum=1)
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be an Optimizer when no hparams are given")
        shared = optimizer
        hparams = jnp.zeros((num_models,), jnp.float32)

        def make(hparam: jax.Array) -> Optimizer:
            return shared

    else:
        hparams = jnp.asarray(hparams)
        if hparams.ndim < 1 or hparams.shape[0] < 1:
            raise ValueError(f"hparams needs a leading model axis, got shape {hparams.shape}")
        if num_models not in (None, hparams.shape[0]):
            raise ValueError(f"num_models {num_models} != len(hparams) {hparams.shape[0]}")
        if isinstance(optimizer, Optimizer) or not callable(optimizer):
            raise TypeError("with hparams, optimizer must be a function hparam -> Optimizer")
        make = optimizer
    n = hparams.shape[0]
    init_key, data_key = jax.random.split(key)
    params = jax.vmap(model.init)(jax.random.split(init_key, n))
    opt_state = jax.vmap(lambda p, h: make(h).init(p))(params, hparams)
    x, y = _validate_data(model, jax.tree.map(lambda a: a[0], params), x, y)
    x = _full_batch_input(x, batch_size, grads)

    def step(params: Params, opt_state: OptState, x: jax.Array, y: jax.Array):
        def one(p: Params, s: OptState, h: jax.Array):
            return _step_body(model, loss, make(h), grads)(p, s, x, y)

        return jax.vmap(one)(params, opt_state, hparams)

    return _run(step, params, opt_state, x, y, data_key, 0, steps, epochs, batch_size, True,
                log_every, progress, on_nonfinite, None)  # fmt: skip


def _run(
    step: StepFn,
    params: Params,
    opt_state: OptState,
    x: jax.Array,
    y: jax.Array,
    data_key: jax.Array,
    start: int,
    steps: int | None,
    epochs: int | None,
    batch_size: int | None,
    drop_last: bool,
    log_every: int,
    progress: bool,
    on_nonfinite: str,
    evaluate: Callable[[Params], Metrics] | None,
) -> FitResult:
    """The host loop shared by `fit` and `fit_many`: launch compiled chunks, read back metrics."""
    if batch_size is None:
        run_step = _jit_step(step)
        log = _Log(steps, "step", progress, on_nonfinite)
        for i in range(steps):
            params, opt_state, metrics = run_step(params, opt_state, x, y)
            log.add(start + i, metrics)
            if (i + 1) % log_every == 0 or i + 1 == steps:
                log.flush("step", lambda index: index, per_batch=False)
                if evaluate is not None:
                    _log_eval(log, "eval_step", start + i + 1, evaluate(params))
        return FitResult(params, opt_state, log.history())

    n = x.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} examples")
    n_batches, rest = divmod(n, batch_size)
    per_epoch = n_batches + (0 if drop_last or rest == 0 else 1)
    if start % per_epoch:
        raise ValueError(
            f"opt_state.timestep {start} is not a whole number of epochs of {per_epoch} steps"
        )
    run_epoch = _make_epoch(step, batch_size)
    tail_step = _jit_step(step) if per_epoch > n_batches else None
    log = _Log(epochs, "epoch", progress, on_nonfinite)
    first_epoch = start // per_epoch
    for e in range(first_epoch, first_epoch + epochs):
        epoch_key = jax.random.fold_in(data_key, e)
        params, opt_state, metrics = run_epoch(params, opt_state, x, y, epoch_key)
        if tail_step is not None:
            idx = jax.random.permutation(epoch_key, n)[n_batches * batch_size :]
            params, opt_state, tail = tail_step(params, opt_state, x[idx], y[idx])
            metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), metrics, tail)
        log.add(e, metrics)
        log.flush("epoch", lambda index: index * per_epoch, per_batch=True)
        if evaluate is not None:
            _log_eval(log, "eval_epoch", e + 1, evaluate(params))
    return FitResult(params, opt_state, log.history())


def _full_batch_input(x: jax.Array, batch_size: int | None, grads: str) -> Any:
    """Full batch with hand-written gradients: add a transposed copy of x (see `Pretransposed`)."""
    return Pretransposed.of(x) if batch_size is None and grads == "manual" else x


def _log_eval(log: _Log, name: str, index: int, metrics: Metrics) -> None:
    log.record(name, index, {f"eval_{k}": float(v) for k, v in metrics.items()})


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _make_eval(model: Layer, loss: Loss, x: jax.Array, y: jax.Array) -> Callable[[Params], Metrics]:
    @jax.jit
    def evaluate(params: Params) -> Metrics:
        outputs = model.apply(params, x)
        return {"loss": loss.value(outputs, y), "accuracy": _accuracy(outputs, y)}

    return evaluate
