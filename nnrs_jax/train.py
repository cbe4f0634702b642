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

from nnrs_jax.layers.base import Layer, Params, PRNGKey, State, forward, has_state
from nnrs_jax.losses import Loss
from nnrs_jax.objective import penalty, value_grad_outputs
from nnrs_jax.optim import Optimizer, apply_updates

__all__ = ["FitResult", "fit", "fit_many", "make_train_step"]

OptState = Any
Metrics = dict[str, jax.Array]
# body(params, state, opt_state, x, y, key) -> (params, state, opt_state, metrics)
Body = Callable[..., tuple[Params, State, OptState, Metrics]]


def _accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    labels = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    hits = jnp.argmax(outputs, axis=-1).astype(labels.dtype) == labels
    return jnp.mean(hits.astype(outputs.dtype))


@functools.lru_cache(maxsize=64)
def _step_body(model: Layer, loss: Loss, optimizer: Optimizer, grads: str) -> Body:
    """The pure (un-jitted) training step shared by `make_train_step`, `fit` and `fit_many`.

    ``key`` is this step's PRNG key (dropout masks; ``None`` for a model that draws none);
    the model runs in training mode and returns its new state (batch-norm running statistics).
    Cached, like the jitted functions built on it, so that calling `fit` again with the same
    model, loss and optimizer (e.g. to resume) reuses the compiled code instead of retracing.
    """
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"grads must be 'manual' or 'autodiff', got {grads!r}")

    def body(params, state, opt_state, x, y, key):
        if grads == "manual":
            total, g, outputs, new_state = value_grad_outputs(
                model, loss, params, x, y, state=state, key=key, train=True
            )
        else:

            def objective(p: Params) -> tuple[jax.Array, tuple[jax.Array, State]]:
                out, st = forward(model, p, x, state=state, key=key, train=True)
                return loss.value(out, y) + penalty(model, p), (out, st)

            (total, (outputs, new_state)), g = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(g, opt_state, params)
        params = apply_updates(params, updates)
        metrics = {"loss": total, "accuracy": _accuracy(outputs, y)}
        return params, new_state, opt_state, metrics

    return body


def make_train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    *,
    grads: Literal["manual", "autodiff"] = "manual",
    with_state: bool = False,
) -> Callable[..., tuple]:
    """A jitted training step.

    * ``with_state=False`` (a model without state): ``step(params, opt_state, x, y, key=None)
      -> (params, opt_state, metrics)``.
    * ``with_state=True`` (any model, e.g. with `batch_norm`): ``step(params, state,
      opt_state, x, y, key=None) -> (params, state, opt_state, metrics)``, ``state`` from
      ``model.init_state()`` and then from the previous step.

    One step: forward in training mode, ``loss + penalty``, gradient, optimizer update.
    ``key`` is the step's PRNG key, needed by stochastic layers (`dropout`): pass a new one
    each step, e.g. ``jax.random.fold_in(key, i)``. ``grads="manual"`` (default) uses the
    hand-written backward passes (`nnrs_jax.loss_and_grad`); ``grads="autodiff"`` uses
    ``jax.value_and_grad`` of the same objective. ``metrics`` is a dict with ``loss``
    (including penalties, before the update) and ``accuracy`` (fraction of ``argmax(outputs)``
    equal to the labels). ``params``, ``state`` and ``opt_state`` are donated: do not reuse
    the arrays you passed in. It compiles once per input shape.

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
    if not with_state and has_state(model):
        raise ValueError(
            f"make_train_step: {model.name} keeps state (e.g. batch-norm running statistics); "
            "use make_train_step(..., with_state=True), whose step is "
            "step(params, state, opt_state, x, y, key) -> (params, state, opt_state, metrics)"
        )
    body = _step_body(model, loss, optimizer, grads)
    return _stateful_step(body) if with_state else _stateless_step(body)


@functools.lru_cache(maxsize=64)
def _stateful_step(body: Body) -> Callable[..., tuple]:
    def step(params, state, opt_state, x, y, key=None):
        return body(params, state, opt_state, x, y, key)

    return jax.jit(step, donate_argnums=(0, 1, 2))


@functools.lru_cache(maxsize=64)
def _stateless_step(body: Body) -> Callable[..., tuple]:
    init_state = None

    def step(params, opt_state, x, y, key=None):
        params, _, opt_state, metrics = body(params, init_state, opt_state, x, y, key)
        return params, opt_state, metrics

    return jax.jit(step, donate_argnums=(0, 1))


class _Carry(NamedTuple):
    """What a training loop threads from step to step; ``step`` counts the updates done."""

    params: Params
    state: State
    opt_state: OptState
    step: jax.Array


def _advance(body: Body, carry: _Carry, x: Any, y: jax.Array, noise_key: PRNGKey):
    """One update; the step's key is ``fold_in(noise_key, step)``, so resuming repeats it."""
    key = jax.random.fold_in(noise_key, carry.step)
    params, state, opt_state, metrics = body(carry.params, carry.state, carry.opt_state, x, y, key)
    return _Carry(params, state, opt_state, carry.step + 1), metrics


@functools.lru_cache(maxsize=64)
def _make_full_step(body: Body):
    """A jitted full-batch step over the carry."""
    return jax.jit(functools.partial(_advance, body), donate_argnums=(0,))


@functools.lru_cache(maxsize=64)
def _make_epoch(body: Body, batch_size: int):
    """A jitted epoch: shuffle from ``perm_key``, gather each batch inside one ``lax.scan``."""

    def epoch(carry: _Carry, x: jax.Array, y: jax.Array, perm_key: PRNGKey, noise_key: PRNGKey):
        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(perm_key, x.shape[0])[: n_batches * batch_size]

        def scan_body(carry: _Carry, idx: jax.Array):
            return _advance(body, carry, x[idx], y[idx], noise_key)

        return jax.lax.scan(scan_body, carry, order.reshape(n_batches, batch_size))

    return jax.jit(epoch, donate_argnums=(0,))


class FitResult(NamedTuple):
    """What `fit` returns.

    Attributes:
        params: the trained parameters.
        opt_state: the optimizer state.
        history: NumPy arrays. Full batch: ``step``, ``loss``, ``accuracy`` per step (metrics of
            the params before that step's update, as the seed printed them). Mini-batch:
            ``epoch``, ``loss``, ``accuracy`` per epoch (means over its batches). With
            ``eval_data``: ``eval_step`` or ``eval_epoch``, ``eval_loss``, ``eval_accuracy``.
        state: the model's non-trainable state after training (``model.init_state()``'s tree,
            e.g. batch-norm running statistics); pass it to `evaluate` and `save`.
        step: the number of updates done so far (resume with ``fit(..., step=result.step)``).
    """

    params: Params
    opt_state: OptState
    history: dict[str, np.ndarray]
    state: State = ()
    step: int = 0


@jax.jit
def _data_stats(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One pass, one compile: are all of x finite, and the range of y."""
    return jnp.all(jnp.isfinite(x)), jnp.min(y), jnp.max(y)


def _validate_data(
    caller: str, model: Layer, params: Params, state: State, x: Any, y: Any
) -> tuple[jax.Array, jax.Array]:
    """Clear errors for bad data before anything is compiled; returns device arrays."""
    ndim = getattr(x, "ndim", None)
    if ndim is None or ndim < 2:
        raise ValueError(
            f"{caller}: x must be an (N, ...) array with a batch axis, e.g. (N, 784) or "
            f"(N, 28, 28, 1), got {getattr(x, 'shape', type(x).__name__)}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{caller}: x must have a floating dtype, got {x.dtype}")
    if getattr(y, "ndim", None) not in (1, 2):
        raise ValueError(
            f"{caller}: y must be labels (N,) or targets (N, classes), got {np.shape(y)}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{caller}: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{caller}: x and y are empty: need at least one example")
    example = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    out = jax.eval_shape(lambda p, s, a: forward(model, p, a, state=s)[0], params, state, example)
    x, y = jax.device_put(x), jax.device_put(y)
    finite, low, high = (int(v) for v in _data_stats(x, y))
    if not finite:
        rows = jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
        raise ValueError(f"{caller}: x contains NaN or inf (first at row {int(jnp.argmin(rows))})")
    classes = out.shape[-1]
    if y.ndim == 1:
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(f"{caller}: labels y must have an integer dtype, got {y.dtype}")
        if low < 0 or high >= classes:
            raise ValueError(
                f"{caller}: labels y must lie in [0, {classes}) for a model with {classes} "
                f"outputs, got values in [{low}, {high}]"
            )
    elif y.shape[1] != classes:
        raise ValueError(f"{caller}: targets y must have shape (N, {classes}), got {y.shape}")
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
    state: State | None = None,
    step: int | None = None,
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
      input goes once through ``model.prepare`` (a first `dense` layer keeps a transposed copy
      for a faster ``dW``).
    * ``batch_size=B``: ``epochs`` epochs; each is one jitted ``lax.scan`` over the batches of a
      permutation drawn from ``fold_in(key, epoch)``, gathered on the device. The partial last
      batch is dropped unless ``drop_last=False`` (then it is one extra, separately compiled step).

    Randomness and state are explicit: ``key`` gives the initial params, the shuffles and each
    step's key for stochastic layers (``fold_in(noise_key, step)``); the model's state (e.g.
    batch-norm running statistics) is threaded through every step and returned in
    `FitResult.state`. ``params``/``opt_state``/``state``/``step`` continue a previous run
    (they are copied, never donated): with the same ``key`` and data, N steps, a save/load,
    and N more equal 2N steps straight, bit for bit. ``step`` defaults to 0 for a new run and
    to ``opt_state.timestep`` when an optimizer state with that field is given. The data is
    moved to the device once. A non-finite loss stops training with `FloatingPointError`
    naming the step (``on_nonfinite="warn"`` only warns). Bad data raises before anything is
    compiled.

    Args:
        model, loss, optimizer: what to train.
        x: ``(N, ...)`` floats (e.g. ``(N, 784)`` or ``(N, 28, 28, 1)``); y: integer labels
            ``(N,)`` or targets ``(N, classes)``.
        key: PRNG key for init (when ``params`` is None), shuffling and stochastic layers.
        state: the model state to start from (default ``model.init_state()``).
        step: the number of updates already done (when resuming).
        eval_data: optional ``(x_eval, y_eval)`` evaluated (inference mode) at each log point /
            epoch.
        progress: show a progress bar (stderr) with loss and accuracy.
        grads: ``"manual"`` (hand-written backward) or ``"autodiff"``.

    Example:
        >>> import jax, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
        >>> result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y,
        ...                 key=jax.random.key(0), steps=50, progress=False)
        >>> bool(result.history["accuracy"][-1] > 0.9), result.step
        (True, 50)
    """
    _check_mode(steps, epochs, batch_size, log_every, on_nonfinite)
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"fit: grads must be 'manual' or 'autodiff', got {grads!r}")
    init_key, data_key, noise_key = _fit_keys(key)
    params = jax.jit(model.init)(init_key) if params is None else jax.tree.map(jnp.copy, params)
    start = _start_step(step, opt_state)
    opt_state = optimizer.init(params) if opt_state is None else jax.tree.map(jnp.copy, opt_state)
    state = model.init_state() if state is None else jax.tree.map(jnp.copy, state)
    x, y = _validate_data("fit", model, params, state, x, y)
    evaluate = None
    if eval_data is not None:
        x_eval, y_eval = _validate_data("fit", model, params, state, *eval_data)
        evaluate = functools.partial(_evaluate_batch, model, loss, x=x_eval, y=y_eval)
    if batch_size is None and grads == "manual":
        x = model.prepare(x)
    body = _step_body(model, loss, optimizer, grads)
    carry = _Carry(params, state, opt_state, jnp.asarray(start, jnp.int32))
    loop = _Loop(steps, epochs, batch_size, drop_last, log_every, progress, on_nonfinite)
    return _run(body, carry, x, y, data_key, noise_key, loop, evaluate)


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
    the same order (a fair comparison), each with its own dropout keys. With ``hparams`` (an
    array with a leading axis of size ``n``), ``optimizer`` is a function
    ``hparam -> Optimizer`` traced once per model, e.g. ``lambda lr: nj.nadam(lr)`` over
    ``hparams=jnp.array([1e-3, 3e-3, 1e-2])``; otherwise one optimizer is shared and
    ``num_models`` says how many seeds. The compiled step is the vmapped step of `fit`, so
    ``n`` models cost far less than ``n`` separate runs.

    Returns:
        A `FitResult` whose params, opt_state, state and history leaves have a leading model
        axis (``history["loss"]`` is ``(steps or epochs, n)``).

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
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"fit_many: grads must be 'manual' or 'autodiff', got {grads!r}")
    if hparams is None:
        _check_count("num_models", num_models, minimum=1)
        if not isinstance(optimizer, Optimizer):
            raise TypeError("fit_many: optimizer must be an Optimizer when no hparams are given")
        shared = optimizer
        hparams = jnp.zeros((num_models,), jnp.float32)

        def make(hparam: jax.Array) -> Optimizer:
            return shared

    else:
        hparams = jnp.asarray(hparams)
        if hparams.ndim < 1 or hparams.shape[0] < 1:
            raise ValueError(
                f"fit_many: hparams needs a leading model axis, got shape {hparams.shape}"
            )
        if num_models not in (None, hparams.shape[0]):
            raise ValueError(
                f"fit_many: num_models {num_models} != len(hparams) {hparams.shape[0]}"
            )
        if isinstance(optimizer, Optimizer) or not callable(optimizer):
            raise TypeError(
                "fit_many: with hparams, optimizer must be a function hparam -> Optimizer"
            )
        make = optimizer
    n = hparams.shape[0]
    init_key, data_key, noise_key = _fit_keys(key)
    params = jax.vmap(model.init)(jax.random.split(init_key, n))
    opt_state = jax.vmap(lambda p, h: make(h).init(p))(params, hparams)
    state = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), model.init_state())
    first = jax.tree.map(lambda a: a[0], (params, state))
    x, y = _validate_data("fit_many", model, *first, x, y)
    if batch_size is None and grads == "manual":
        x = model.prepare(x)

    def body(params, state, opt_state, x, y, key):
        def one(p, s, o, h, k):
            return _step_body(model, loss, make(h), grads)(p, s, o, x, y, k)

        return jax.vmap(one)(params, state, opt_state, hparams, jax.random.split(key, n))

    carry = _Carry(params, state, opt_state, jnp.asarray(0, jnp.int32))
    loop = _Loop(steps, epochs, batch_size, True, log_every, progress, on_nonfinite)
    return _run(body, carry, x, y, data_key, noise_key, loop, None)


class _Loop(NamedTuple):
    """The host loop's settings, shared by `fit` and `fit_many`."""

    steps: int | None
    epochs: int | None
    batch_size: int | None
    drop_last: bool
    log_every: int
    progress: bool
    on_nonfinite: str


def _run(
    body: Body,
    carry: _Carry,
    x: Any,
    y: jax.Array,
    data_key: PRNGKey,
    noise_key: PRNGKey,
    loop: _Loop,
    evaluate: Callable[[Params, State], Metrics] | None,
) -> FitResult:
    """The host loop shared by `fit` and `fit_many`: launch compiled chunks, read back metrics."""
    start = int(carry.step)
    if loop.batch_size is None:
        run_step = _make_full_step(body)
        log = _Log(loop.steps, "step", loop.progress, loop.on_nonfinite)
        for i in range(loop.steps):
            carry, metrics = run_step(carry, x, y, noise_key)
            log.add(start + i, metrics)
            if (i + 1) % loop.log_every == 0 or i + 1 == loop.steps:
                log.flush("step", lambda index: index, per_batch=False)
                if evaluate is not None:
                    _log_eval(log, "eval_step", start + i + 1, evaluate(carry.params, carry.state))
        return _result(carry, log)

    n, batch_size = x.shape[0], loop.batch_size
    if batch_size > n:
        raise ValueError(f"fit: batch_size {batch_size} is larger than the {n} examples")
    n_batches, rest = divmod(n, batch_size)
    per_epoch = n_batches + (0 if loop.drop_last or rest == 0 else 1)
    if start % per_epoch:
        raise ValueError(f"fit: step {start} is not a whole number of epochs of {per_epoch} steps")
    run_epoch = _make_epoch(body, batch_size)
    tail_step = _make_full_step(body) if per_epoch > n_batches else None
    log = _Log(loop.epochs, "epoch", loop.progress, loop.on_nonfinite)
    first_epoch = start // per_epoch
    for e in range(first_epoch, first_epoch + loop.epochs):
        perm_key = jax.random.fold_in(data_key, e)
        carry, metrics = run_epoch(carry, x, y, perm_key, noise_key)
        if tail_step is not None:
            idx = jax.random.permutation(perm_key, n)[n_batches * batch_size :]
            carry, tail = tail_step(carry, x[idx], y[idx], noise_key)
            metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), metrics, tail)
        log.add(e, metrics)
        log.flush("epoch", lambda index: index * per_epoch, per_batch=True)
        if evaluate is not None:
            _log_eval(log, "eval_epoch", e + 1, evaluate(carry.params, carry.state))
    return _result(carry, log)


def _result(carry: _Carry, log: _Log) -> FitResult:
    history = log.history()
    return FitResult(carry.params, carry.opt_state, history, carry.state, int(carry.step))


def _fit_keys(key: Any) -> tuple[PRNGKey, PRNGKey, PRNGKey]:
    """``(init_key, data_key, noise_key)``: params, shuffles (``fold_in(data_key, epoch)``) and
    stochastic layers (``fold_in(noise_key, step)``)."""
    if not isinstance(key, jax.Array) or not (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32
    ):
        raise TypeError(
            f"fit: key must be a PRNG key from jax.random.key(seed), got {type(key).__name__}"
        )
    init_key, data_key = jax.random.split(key)
    return init_key, data_key, jax.random.split(data_key)[1]


def _start_step(step: Any, opt_state: OptState | None) -> int:
    """The number of updates already done: ``step``, else ``opt_state.timestep``, else 0."""
    if step is not None:
        _check_count("step", step, minimum=0)
        return int(step)
    if opt_state is None:
        return 0
    timestep = getattr(opt_state, "timestep", None)
    if timestep is None:
        raise ValueError(
            "fit: resuming from an opt_state without a timestep field; pass step=result.step "
            "(the number of updates already done)"
        )
    return int(timestep)


def _log_eval(log: _Log, name: str, index: int, metrics: Metrics) -> None:
    log.record(name, index, {f"eval_{k}": float(v) for k, v in metrics.items()})


def _check_count(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"fit: {name} must be an int >= {minimum}, got {value!r}")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _evaluate_batch(
    model: Layer, loss: Loss, params: Params, state: State, *, x: jax.Array, y: jax.Array
) -> Metrics:
    """Loss and accuracy of the whole ``(x, y)`` in inference mode."""
    outputs, _ = forward(model, params, x, state=state)
    return {"loss": loss.value(outputs, y), "accuracy": _accuracy(outputs, y)}
