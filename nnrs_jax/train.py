"""Training: one jit-compiled step, whole mini-batch epochs inside ``lax.scan``, `fit`, `fit_many`.

With a ``mesh`` (`nnrs_jax.parallel`) the same step runs data parallel: batches split over the
mesh's devices, everything else replicated, the gradient all-reduce inserted by XLA.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from nnrs_jax import parallel
from nnrs_jax.layers.base import Layer, Params, PRNGKey, State, forward, has_state
from nnrs_jax.losses import Loss
from nnrs_jax.objective import penalty, value_grad_outputs
from nnrs_jax.optim import Optimizer, apply_updates
from nnrs_jax.optim.base import bind

__all__ = ["FitResult", "fit", "fit_many", "make_train_step"]

OptState = Any
Metrics = dict[str, jax.Array]
# body(params, state, opt_state, x, y, key, hyper=()) -> (params, state, opt_state, metrics);
# hyper: the per-model hyperparameters of `fit_many`, arguments of the compiled code.
Body = Callable[..., tuple[Params, State, OptState, Metrics]]


def _accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    labels = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    hits = jnp.argmax(outputs, axis=-1).astype(labels.dtype) == labels
    return jnp.mean(hits.astype(outputs.dtype))


def _make_body(model: Layer, loss: Loss, optimizer: Optimizer, grads: str) -> Body:
    """The pure (un-jitted) training step shared by `make_train_step`, `fit` and `fit_many`.

    ``key`` is this step's PRNG key (dropout masks; ``None`` for a model that draws none);
    the model runs in training mode and returns its new state (batch-norm running statistics).
    ``hyper`` is ignored: `fit_many`'s vmapped body builds ``optimizer`` from it instead.
    """
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"grads must be 'manual' or 'autodiff', got {grads!r}")

    def body(params, state, opt_state, x, y, key, hyper=()):
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


# Cached, like the jitted functions built on it, so that calling `fit` again with the same model
# and loss and an equal optimizer (e.g. to resume, or `adam(1e-3)` built anew) reuses the
# compiled code instead of retracing. Only concrete settings are keys here: a traced optimizer
# (inside `fit_many`'s vmap) goes through `_make_body`, never through this cache.
_step_body = functools.lru_cache(maxsize=64)(_make_body)


def make_train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    *,
    grads: Literal["manual", "autodiff"] = "manual",
    with_state: bool = False,
    mesh: Mesh | None = None,
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

    With ``mesh`` (a `jax.sharding.Mesh` with one axis ``"data"``, e.g.
    `nnrs_jax.parallel.data_mesh`), the step is data parallel: ``x`` and ``y`` are split over
    the mesh's devices along their first axis (`nnrs_jax.parallel.shard_batch`; in a
    multi-process run each process passes its own block of rows), ``params``, ``state``,
    ``opt_state`` and ``key`` are replicated, and XLA adds the all-reduce of the gradients;
    every output is replicated. The batch size must be divisible by the device count.

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
    if mesh is not None:
        return _mesh_step(body, parallel.check_mesh("make_train_step", mesh), with_state)
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


@functools.lru_cache(maxsize=64)
def _replicated_step(body: Body, mesh: Mesh) -> Callable[..., tuple]:
    """The stateful step compiled for ``mesh``: every output replicated."""

    def step(params, state, opt_state, x, y, key):
        return body(params, state, opt_state, x, y, key)

    return jax.jit(step, donate_argnums=(0, 1, 2), out_shardings=parallel.replicated(mesh))


def _mesh_step(body: Body, mesh: Mesh, with_state: bool) -> Callable[..., tuple]:
    """`make_train_step`'s data-parallel step: place the arguments, run, pace the host."""
    compiled = _replicated_step(body, mesh)
    paced, calls = parallel.paced(mesh), [0]

    def run(params, state, opt_state, x, y, key):
        x = parallel.shard("make_train_step", x, mesh)
        y = parallel.shard("make_train_step", y, mesh)
        params, state, opt_state, key = parallel.replicate((params, state, opt_state, key), mesh)
        out = compiled(params, state, opt_state, x, y, key)
        calls[0] += 1
        if paced and calls[0] % parallel.MAX_AHEAD == 0:
            jax.block_until_ready(out)
        return out

    if with_state:

        def step(params, state, opt_state, x, y, key=None):
            return run(params, state, opt_state, x, y, key)

        return step

    def stateless(params, opt_state, x, y, key=None):
        params, _, opt_state, metrics = run(params, None, opt_state, x, y, key)
        return params, opt_state, metrics

    return stateless


class _Carry(NamedTuple):
    """What a training loop threads from step to step; ``step`` counts the updates done."""

    params: Params
    state: State
    opt_state: OptState
    step: jax.Array


def _advance(body: Body, carry: _Carry, x: Any, y: jax.Array, noise_key: PRNGKey, hyper: Any = ()):
    """One update; the step's key is ``fold_in(noise_key, step)``, so resuming repeats it."""
    key = jax.random.fold_in(noise_key, carry.step)
    params, state, opt_state, metrics = body(
        carry.params, carry.state, carry.opt_state, x, y, key, hyper
    )
    return _Carry(params, state, opt_state, carry.step + 1), metrics


@functools.lru_cache(maxsize=64)
def _make_full_step(body: Body, out_shardings: Any = None):
    """A jitted full-batch step over the carry.

    ``out_shardings``: ``None`` on one device; on a mesh, where the carry and the metrics go.
    """
    return jax.jit(
        functools.partial(_advance, body), donate_argnums=(0,), out_shardings=out_shardings
    )


@functools.lru_cache(maxsize=64)
def _make_epoch(body: Body, batch_size: int, out_shardings: Any = None):
    """A jitted epoch: shuffle from ``perm_key``, gather each batch inside one ``lax.scan``."""

    def epoch(carry: _Carry, x, y, perm_key: PRNGKey, noise_key: PRNGKey, hyper: Any = ()):
        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(perm_key, x.shape[0])[: n_batches * batch_size]

        def scan_body(carry: _Carry, idx: jax.Array):
            return _advance(body, carry, x[idx], y[idx], noise_key, hyper)

        return jax.lax.scan(scan_body, carry, order.reshape(n_batches, batch_size))

    return jax.jit(epoch, donate_argnums=(0,), out_shardings=out_shardings)


@functools.lru_cache(maxsize=64)
def _make_fed_epoch(body: Body, out_shardings: Any):
    """A jitted epoch over batches placed beforehand: ``xs`` ``(n_batches, batch, ...)``."""

    def epoch(carry: _Carry, xs, ys, noise_key: PRNGKey):
        def scan_body(carry: _Carry, batch: tuple[jax.Array, jax.Array]):
            return _advance(body, carry, *batch, noise_key)

        return jax.lax.scan(scan_body, carry, (xs, ys))

    return jax.jit(epoch, donate_argnums=(0,), out_shardings=out_shardings)


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
    caller: str, model: Layer, params: Params, state: State, x: Any, y: Any, place: bool = True
) -> tuple[Any, Any]:
    """Clear errors for bad data before anything is compiled.

    Returns device arrays (``place``), or NumPy arrays for a mesh to place its way.
    """
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
    if place:
        x, y = jax.device_put(x), jax.device_put(y)
    else:
        x, y = np.asarray(x), np.asarray(y)
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
        shown = progress and parallel.is_main_process()  # one bar in a multi-process run
        self.bar = tqdm(total=total, unit=unit, disable=not shown, dynamic_ncols=True)
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
                if parallel.is_main_process():
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
    mesh: Mesh | None = None,
    local_data: bool = False,
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
    compiled. Calling `fit` again with the same model and loss and an equal optimizer (e.g.
    ``nj.adam(1e-3)`` built anew) reuses the compiled code.

    **Data parallel** (``mesh``, see `nnrs_jax.parallel`): each batch is split over the mesh's
    devices, params, model state and optimizer state are replicated, and XLA all-reduces the
    gradients. The batches and their order are the one-device run's, so the results equal it
    to float32 rounding. The batch size (in full-batch training: the number of examples) must
    be divisible by the device count. Each epoch, every process gathers its slice of every
    batch of the epoch's permutation on the host and puts it on its own devices; in full-batch
    training ``x`` is split by rows (and a `dense` layer's transposed copy by columns).
    ``eval_data`` is replicated. In a multi-process run every process makes the same call
    (after `nnrs_jax.parallel.initialize`), holding the whole dataset; only process 0 draws the
    progress bar. With ``local_data=True``, ``x``/``y`` are instead this process's own share
    of the examples (data already split per host, the same number of examples per device on
    every process): each process shuffles its share with the same key, and every batch takes
    ``batch_size × (its devices / all devices)`` rows from each process; the batches then
    differ from a one-device run's. The returned arrays are replicated over the mesh.

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
        mesh: a `jax.sharding.Mesh` with one axis ``"data"`` to train data parallel on.
        local_data: with ``mesh``: ``x`` and ``y`` are this process's share of the data.

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
    if mesh is not None:
        mesh = parallel.check_mesh("fit", mesh)
    elif local_data:
        raise ValueError("fit: local_data=True describes data split over a mesh; pass mesh=")
    if local_data and not drop_last:
        raise ValueError("fit: local_data=True needs drop_last=True (no partial last batch)")
    init_key, data_key, noise_key = _fit_keys(key)
    params = jax.jit(model.init)(init_key) if params is None else jax.tree.map(jnp.copy, params)
    start = _start_step(step, opt_state)
    opt_state = optimizer.init(params) if opt_state is None else jax.tree.map(jnp.copy, opt_state)
    state = model.init_state() if state is None else jax.tree.map(jnp.copy, state)
    on_device = mesh is None
    x, y = _validate_data("fit", model, params, state, x, y, place=on_device)
    evaluate = None
    if eval_data is not None:
        x_eval, y_eval = _validate_data("fit", model, params, state, *eval_data, place=on_device)
        if mesh is not None:
            x_eval, y_eval = parallel.replicate((x_eval, y_eval), mesh)
        evaluate = functools.partial(_evaluate_batch, model, loss, x=x_eval, y=y_eval)
    body = _step_body(model, loss, optimizer, grads)
    carry = _Carry(params, state, opt_state, jnp.asarray(start, jnp.int32))
    loop = _Loop(steps, epochs, batch_size, drop_last, log_every, progress, on_nonfinite)
    layout = _Layout(mesh)
    if mesh is None:
        data: _OnDevice | _Feed = _OnDevice(x, y)
    else:
        data = _Feed(mesh, x, y, local_data)
        if batch_size is None:
            data = _OnDevice(*data.whole())
    if batch_size is None and grads == "manual":
        data = data._replace(x=model.prepare(data.x))
    return _run(body, layout.carry(carry), data, data_key, noise_key, loop, evaluate, layout)


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
    mesh: Mesh | None = None,
) -> FitResult:
    """Train several models at once with ``jax.vmap``: different seeds and/or hyperparameters.

    Model ``i`` starts from ``model.init(split(key, n)[i])``; all models see the same data in
    the same order (a fair comparison), each with its own dropout keys. With ``hparams`` (an
    array with a leading axis of size ``n``), ``optimizer`` is a function
    ``hparam -> Optimizer``, e.g. ``lambda lr: nj.nadam(lr)`` over
    ``hparams=jnp.array([1e-3, 3e-3, 1e-2])``; otherwise one optimizer is shared and
    ``num_models`` says how many seeds. The compiled step is the vmapped step of `fit`, so
    ``n`` models cost far less than ``n`` separate runs.

    Compiled once: the function is called on each concrete ``hparams[i]``; where the results
    are the same optimizer but for some numbers (the library's optimizers compare by their
    settings), those numbers become arguments of the compiled step, so calling `fit_many`
    again, even with a new ``lambda`` or other values, reuses the compiled code. Numbers that
    differ between models must be ones the optimizer accepts as arrays (learning rates);
    anything else differing (a custom optimizer built from closures) makes the function be
    traced with ``hparams[i]`` as an array instead, compiled anew for each new function.

    With ``mesh`` (one axis ``"data"``), the model axis is split over the mesh's devices:
    ``n`` must be divisible by the device count, each device trains ``n / devices`` models on
    a replicated copy of the data, and the returned params and states stay split over the
    mesh (the history is gathered).

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
        n, settings = num_models, _Settings(("static", optimizer), ())
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
        n = hparams.shape[0]
        settings = _settings([optimizer(hparams[i]) for i in range(n)], hparams.dtype)
    if mesh is not None:
        mesh = parallel.check_mesh("fit_many", mesh)
        parallel.check_divisible("fit_many", "the number of models", n, mesh)
    if settings is None:
        # Not the same optimizer up to numbers: trace the function itself on hparams[i].
        body, hyper, make = _traced_many_body(model, loss, optimizer, grads, n), hparams, optimizer
    else:
        body, hyper = _many_body(model, loss, settings.template, grads, n), settings.hyper

        def make(h: Any) -> Optimizer:
            return _instantiate(settings.template, h)

    init_key, data_key, noise_key = _fit_keys(key)
    params = jax.vmap(model.init)(jax.random.split(init_key, n))
    opt_state = jax.vmap(lambda p, h: make(h).init(p))(params, hyper)
    state = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), model.init_state())
    first = jax.tree.map(lambda a: a[0], (params, state))
    x, y = _validate_data("fit_many", model, *first, x, y)
    layout = _Layout(mesh, models=True)
    if mesh is not None:
        x, y = parallel.replicate((x, y), mesh)
        hyper = parallel.distribute(hyper, parallel.split(mesh))
    if batch_size is None and grads == "manual":
        x = model.prepare(x)
    carry = layout.carry(_Carry(params, state, opt_state, jnp.asarray(0, jnp.int32)))
    loop = _Loop(steps, epochs, batch_size, True, log_every, progress, on_nonfinite)
    return _run(body, carry, _OnDevice(x, y), data_key, noise_key, loop, None, layout, hyper)


class _Settings(NamedTuple):
    """An optimizer described once for all models: ``template`` with slots for ``hyper``.

    ``template`` is a hashable tree of nodes, ``("bind", fn, children)``, ``("tuple", type,
    children)``, ``("static", value)`` and ``("slot", i)``; ``hyper[i]`` holds slot ``i``'s
    value for each model (a leading model axis).
    """

    template: Any
    hyper: tuple[jax.Array, ...]


def _describe(value: Any, numbers: list[float]) -> Any:
    """A hashable node for ``value`` (an optimizer or a part of one); floats go to ``numbers``.

    Raises:
        TypeError: ``value`` holds something that is neither a `bind`, a tuple, a number nor
            hashable (e.g. an array).
    """
    if isinstance(value, bind):
        return ("bind", value.fn, tuple(_describe(h, numbers) for h in value.hyper))
    if isinstance(value, tuple):
        return ("tuple", type(value), tuple(_describe(v, numbers) for v in value))
    if isinstance(value, (float, np.floating)):
        numbers.append(float(value))
        return ("number",)
    hash(value)
    return ("static", value)


def _settings(optimizers: list[Any], dtype: Any) -> _Settings | None:
    """The optimizers as one template whose differing numbers are slots; ``None`` if not alike.

    Numbers equal across the models stay constants of the compiled code; the others become
    ``hyper`` arrays (in ``dtype`` when it is a float type), arguments of the compiled code.
    """
    nodes, numbers = [], []
    for optimizer in optimizers:
        found: list[float] = []
        try:
            nodes.append(_describe(optimizer, found))
        except TypeError:
            return None
        numbers.append(found)
    if any(node != nodes[0] for node in nodes):
        return None
    columns = iter(zip(*numbers, strict=True))
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else None
    hyper: list[jax.Array] = []

    def fill(node: Any) -> Any:
        if node[0] == "number":
            column = next(columns)
            if len(set(column)) == 1:
                return ("static", column[0])
            hyper.append(jnp.asarray(column, dtype))
            return ("slot", len(hyper) - 1)
        if node[0] in ("bind", "tuple"):
            return (node[0], node[1], tuple(fill(child) for child in node[2]))
        return node

    template = fill(nodes[0])
    return _Settings(template, tuple(hyper))


def _instantiate(node: Any, hyper: Any) -> Any:
    """Rebuild an optimizer from its template, slot ``i`` taking the value ``hyper[i]``."""
    kind = node[0]
    if kind == "slot":
        return hyper[node[1]]
    if kind == "static":
        return node[1]
    children = [_instantiate(child, hyper) for child in node[2]]
    if kind == "bind":
        return bind(node[1], *children)
    cls = node[1]
    return cls(*children) if hasattr(cls, "_fields") else cls(children)


@functools.lru_cache(maxsize=64)
def _many_body(model: Layer, loss: Loss, template: Any, grads: str, n: int) -> Body:
    """`fit`'s step under ``vmap`` over ``n`` models, each optimizer built from ``hyper``."""

    def body(params, state, opt_state, x, y, key, hyper=()):
        def one(p, s, o, h, k):
            optimizer = _instantiate(template, h)
            return _make_body(model, loss, optimizer, grads)(p, s, o, x, y, k)

        return jax.vmap(one)(params, state, opt_state, hyper, jax.random.split(key, n))

    return body


@functools.lru_cache(maxsize=8)
def _traced_many_body(model: Layer, loss: Loss, make: Callable, grads: str, n: int) -> Body:
    """As `_many_body`, for optimizers only ``make`` can build: ``make(hparam)`` traced."""

    def body(params, state, opt_state, x, y, key, hyper=()):
        def one(p, s, o, h, k):
            return _make_body(model, loss, make(h), grads)(p, s, o, x, y, k)

        return jax.vmap(one)(params, state, opt_state, hyper, jax.random.split(key, n))

    return body


class _Loop(NamedTuple):
    """The host loop's settings, shared by `fit` and `fit_many`."""

    steps: int | None
    epochs: int | None
    batch_size: int | None
    drop_last: bool
    log_every: int
    progress: bool
    on_nonfinite: str


class _Layout(NamedTuple):
    """Where a run's arrays live: one device (no mesh), or a mesh, replicated or split.

    ``models``: `fit_many` on a mesh: the carry's leading model axis is split over it.
    """

    mesh: Mesh | None = None
    models: bool = False

    def out_shardings(self) -> Any:
        """The ``out_shardings`` of the compiled step and epoch (``None``: no mesh)."""
        if self.mesh is None:
            return None
        whole = parallel.replicated(self.mesh)
        if not self.models:
            return whole
        split = parallel.split(self.mesh)
        return (_Carry(split, split, split, whole), whole)

    def carry(self, carry: _Carry) -> _Carry:
        if self.mesh is None:
            return carry
        if not self.models:
            return parallel.replicate(carry, self.mesh)
        per_model = parallel.distribute(carry[:3], parallel.split(self.mesh))
        return _Carry(*per_model, parallel.replicate(carry.step, self.mesh))

    def key(self, key: PRNGKey) -> PRNGKey:
        return key if self.mesh is None else parallel.replicate(key, self.mesh)


class _OnDevice(NamedTuple):
    """All the data on the device (replicated on a mesh); batches gathered inside the epoch."""

    x: Any
    y: jax.Array

    @property
    def rows(self) -> int:
        return self.y.shape[0]

    def tail(self, perm_key: PRNGKey, batch_size: int) -> tuple[Any, jax.Array]:
        """The partial last batch of the epoch's permutation."""
        idx = jax.random.permutation(perm_key, self.rows)[self.rows // batch_size * batch_size :]
        return self.x[idx], self.y[idx]


class _Feed:
    """Data-parallel input: each process puts its slice of every batch on its own devices.

    Without ``local_data`` every process holds all ``N`` examples and the batches are those of
    the one-device run: the epoch's permutation of ``range(N)``, cut into batches, each split
    over the devices. With ``local_data`` each process holds its own share, shuffles it with
    the same key, and gives every batch its block of rows.
    """

    def __init__(self, mesh: Mesh, x: np.ndarray, y: np.ndarray, local_data: bool) -> None:
        self.mesh, self.x, self.y, self.local_data = mesh, x, y, local_data
        devices = mesh.devices.size
        own = parallel.process_rows(mesh, devices)
        self.own = own.stop - own.start  # this process's devices
        self.rows = x.shape[0] * devices // self.own if local_data else x.shape[0]
        if local_data:
            if x.shape[0] % self.own:
                raise ValueError(
                    f"fit: with local_data=True, the {x.shape[0]} examples of this process "
                    f"must be divisible by its {self.own} devices"
                )
            per_device = multihost_utils.process_allgather(np.int64(x.shape[0] // self.own))
            if len(set(np.ravel(per_device).tolist())) != 1:
                raise ValueError(
                    "fit: with local_data=True every process must hold the same number of "
                    f"examples per device, got {np.ravel(per_device).tolist()}"
                )
        self.order = np.arange(0)

    def _place(self, rows: np.ndarray, shape: tuple[int, ...], axis: int) -> tuple[Any, Any]:
        sharding = parallel.split(self.mesh, axis)
        return tuple(
            parallel.assemble(a[rows], sharding, (*shape, *a.shape[1:])) for a in (self.x, self.y)
        )

    def whole(self) -> tuple[jax.Array, jax.Array]:
        """All examples as one batch split by rows (full-batch training)."""
        parallel.check_divisible(
            "fit", "the number of examples (full-batch training's batch)", self.rows, self.mesh
        )
        rows = np.arange(self.x.shape[0])
        if not self.local_data:
            rows = rows[parallel.process_rows(self.mesh, self.rows)]
        return self._place(rows, (self.rows,), 0)

    def check(self, batch_size: int, rest: int) -> None:
        parallel.check_divisible("fit", "batch_size", batch_size, self.mesh)
        if rest:
            parallel.check_divisible(
                "fit", "the partial last batch (drop_last=False) of", rest, self.mesh
            )

    def epoch(self, perm_key: PRNGKey, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """The epoch's batches, ``(n_batches, batch_size, ...)``, split on axis 1."""
        share = parallel.process_rows(self.mesh, batch_size)
        width = share.stop - share.start
        self.order = np.asarray(jax.random.permutation(perm_key, self.x.shape[0]))
        if self.local_data:
            count = self.x.shape[0] // width
            rows = self.order[: count * width].reshape(count, width)
        else:
            count = self.rows // batch_size
            rows = self.order[: count * batch_size].reshape(count, batch_size)[:, share]
        return self._place(rows, (count, batch_size), 1)

    def tail(self, perm_key: PRNGKey, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """The partial last batch of the permutation `epoch` drew, split by rows."""
        rest = self.order[self.rows // batch_size * batch_size :]
        return self._place(rest[parallel.process_rows(self.mesh, rest.size)], (rest.size,), 0)


def _run(
    body: Body,
    carry: _Carry,
    data: _OnDevice | _Feed,
    data_key: PRNGKey,
    noise_key: PRNGKey,
    loop: _Loop,
    evaluate: Callable[[Params, State], Metrics] | None,
    layout: _Layout | None = None,
    hyper: Any = (),
) -> FitResult:
    """The host loop shared by `fit` and `fit_many`: launch compiled chunks, read back metrics."""
    layout = _Layout() if layout is None else layout
    start = int(carry.step)
    out = layout.out_shardings()
    noise_key = layout.key(noise_key)
    paced = parallel.paced(layout.mesh)
    if loop.batch_size is None:
        run_step = _make_full_step(body, out)
        log = _Log(loop.steps, "step", loop.progress, loop.on_nonfinite)
        for i in range(loop.steps):
            carry, metrics = run_step(carry, data.x, data.y, noise_key, hyper)
            log.add(start + i, metrics)
            if (i + 1) % loop.log_every == 0 or i + 1 == loop.steps:
                log.flush("step", lambda index: index, per_batch=False)
                if evaluate is not None:
                    _log_eval(log, "eval_step", start + i + 1, evaluate(carry.params, carry.state))
            elif paced and (i + 1) % parallel.MAX_AHEAD == 0:
                jax.block_until_ready(carry.step)
        return _result(carry, log)

    n, batch_size = data.rows, loop.batch_size
    if batch_size > n:
        raise ValueError(f"fit: batch_size {batch_size} is larger than the {n} examples")
    n_batches, rest = divmod(n, batch_size)
    per_epoch = n_batches + (0 if loop.drop_last or rest == 0 else 1)
    if start % per_epoch:
        raise ValueError(f"fit: step {start} is not a whole number of epochs of {per_epoch} steps")
    fed = isinstance(data, _Feed)
    if fed:
        data.check(batch_size, rest if per_epoch > n_batches else 0)
        run_epoch = _make_fed_epoch(body, out)
    else:
        run_epoch = _make_epoch(body, batch_size, out)
    tail_step = _make_full_step(body, out) if per_epoch > n_batches else None
    log = _Log(loop.epochs, "epoch", loop.progress, loop.on_nonfinite)
    first_epoch = start // per_epoch
    for e in range(first_epoch, first_epoch + loop.epochs):
        perm_key = jax.random.fold_in(data_key, e)
        if fed:
            carry, metrics = run_epoch(carry, *data.epoch(perm_key, batch_size), noise_key)
        else:
            carry, metrics = run_epoch(
                carry, data.x, data.y, layout.key(perm_key), noise_key, hyper
            )
        if tail_step is not None:
            carry, tail = tail_step(carry, *data.tail(perm_key, batch_size), noise_key, hyper)
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
