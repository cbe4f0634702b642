"""The one pure training step, its in-graph hooks (augmentation, metrics), `make_train_step`.

The step is written once (`make_body`) and used by `make_train_step`, the compiled epochs of
`fit` and, under ``vmap``, by `fit_many`. Everything it does runs inside the compiled code:
the augmentation of the batch, the forward pass, the hand-written backward pass, the optimizer
update and the metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from nnrs_jax import autotune, parallel
from nnrs_jax.data_checks import task
from nnrs_jax.layers.base import Layer, Params, State, check_model, forward, has_state
from nnrs_jax.losses import Loss
from nnrs_jax.objective import penalty, value_grad_outputs
from nnrs_jax.optim import Optimizer, apply_updates

__all__ = ["accuracy", "make_train_step"]

OptState = Any
Metrics = dict[str, jax.Array]
MetricFn = Callable[[jax.Array, jax.Array], jax.Array]
Augment = Callable[[jax.Array, jax.Array], jax.Array]
# A hashable form of a metrics dict: ((name, fn), ...) sorted by name; () for the default.
MetricItems = tuple[tuple[str, MetricFn], ...]
# body(params, state, opt_state, x, y, key, hyper=()) -> (params, state, opt_state, metrics);
# hyper: the per-model hyperparameters of `fit_many`, arguments of the compiled code.
Body = Callable[..., tuple[Params, State, OptState, Metrics]]


def accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of rows whose ``argmax(outputs)`` is the label.

    ``targets``: integer labels ``(batch,)`` or one-hot / probabilities ``(batch, classes)``
    (their argmax is the label). Returns a scalar in ``outputs``' dtype.

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> float(nj.accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])))
        0.5
    """
    labels = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    hits = jnp.argmax(outputs, axis=-1).astype(labels.dtype) == labels
    return jnp.mean(hits.astype(outputs.dtype))


def metric_items(caller: str, metrics: Mapping[str, MetricFn] | None) -> MetricItems:
    """``metrics`` checked and made hashable (the compiled step is cached on it)."""
    if metrics is None:
        return ()
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"{caller}: metrics must be a dict {{name: fn(outputs, targets) -> scalar}}, "
            f"got {type(metrics).__name__}"
        )
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name or name == "loss":
            raise ValueError(f"{caller}: metric names must be non-empty str other than 'loss', "
                             f"got {name!r}")  # fmt: skip
        if not callable(fn):
            raise TypeError(f"{caller}: metric {name!r} must be a function, got {fn!r}")
    return tuple(sorted(metrics.items()))


def check_augment(caller: str, augment: Any) -> Augment | None:
    if augment is not None and not callable(augment):
        raise TypeError(
            f"{caller}: augment must be a function (key, x_batch) -> x_batch, e.g. "
            f"nj.augment.random_shift(2), got {type(augment).__name__}"
        )
    return augment


def check_grads_mode(caller: str, grads: Any) -> str:
    if grads not in ("manual", "autodiff"):
        raise ValueError(f"{caller}: grads must be 'manual' or 'autodiff', got {grads!r}")
    return grads


def compute_metrics(
    loss: Loss, metrics: MetricItems, total: jax.Array, outputs: jax.Array, targets: jax.Array
) -> Metrics:
    """``loss`` and each metric of the batch; by default ``accuracy`` for classification."""
    if not metrics and task(loss, targets) == "classification":
        metrics = (("accuracy", accuracy),)
    values = {"loss": total}
    for name, fn in metrics:
        value = jnp.asarray(fn(outputs, targets))
        if value.shape != ():
            raise ValueError(
                f"metric {name!r} must return a scalar (a mean over the batch), got shape "
                f"{value.shape}"
            )
        values[name] = value
    return values


def make_body(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    grads: str,
    augment: Augment | None = None,
    metrics: MetricItems = (),
) -> Body:
    """The pure (un-jitted) training step.

    ``key`` is this step's PRNG key (``None`` for a model and augmentation that draw none).
    With ``augment``, ``split(key)`` gives the augmentation's key and the model's. The model
    runs in training mode and returns its new state. ``hyper`` is ignored: `fit_many`'s
    vmapped body builds ``optimizer`` from it instead.
    """

    def body(params, state, opt_state, x, y, key, hyper=()):
        if augment is not None:
            if key is None:
                raise ValueError("the training step: augment needs a key; pass key=")
            augment_key, key = jax.random.split(key)
            x = augment(augment_key, x)
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
        return params, new_state, opt_state, compute_metrics(loss, metrics, total, outputs, y)

    return body


# Cached, like the jitted functions built on it, so that calling `fit` again with the same model
# and loss and an equal optimizer (e.g. to resume, or `adam(1e-3)` built anew) reuses the
# compiled code instead of retracing. Only concrete settings are keys here: a traced optimizer
# (inside `fit_many`'s vmap) goes through `make_body`, never through this cache.
# The cache is also keyed by `autotune.trace_token()`: an ``impl="auto"`` layer reads its
# implementation at trace time, so a newly measured choice gives a new body and a new trace.
_cached_body = functools.lru_cache(maxsize=64)(
    lambda model, loss, optimizer, grads, augment, metrics, token: make_body(
        model, loss, optimizer, grads, augment, metrics
    )
)


def step_body(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    grads: str,
    augment: Augment | None = None,
    metrics: MetricItems = (),
) -> Body:
    """`make_body`, cached by its arguments and the autotuning state (see above)."""
    return _cached_body(model, loss, optimizer, grads, augment, metrics, autotune.trace_token())


def make_train_step(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    *,
    grads: Literal["manual", "autodiff"] = "manual",
    with_state: bool = False,
    mesh: Mesh | None = None,
    augment: Augment | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
) -> Callable[..., tuple]:
    """A jitted training step.

    * ``with_state=False`` (a model without state): ``step(params, opt_state, x, y, key=None)
      -> (params, opt_state, metrics)``.
    * ``with_state=True`` (any model, e.g. with `batch_norm`): ``step(params, state,
      opt_state, x, y, key=None) -> (params, state, opt_state, metrics)``, ``state`` from
      ``model.init_state()`` and then from the previous step.

    One step: ``x ← augment(k_a, x)`` (when given), forward in training mode,
    ``loss + penalty``, gradient, optimizer update. ``key`` is the step's PRNG key, needed by
    stochastic layers (`dropout`) and by ``augment``: pass a new one each step, e.g.
    ``jax.random.fold_in(key, i)``. ``grads="manual"`` (default) uses the hand-written backward
    passes (`nnrs_jax.loss_and_grad`); ``grads="autodiff"`` uses ``jax.value_and_grad`` of the
    same objective. ``metrics`` is a dict with ``loss`` (including penalties, before the
    update) and, by default, ``accuracy`` (`accuracy`) when the targets are integer labels or
    the loss is a classification loss; pass ``metrics={name: fn(outputs, targets)}`` to choose
    others (each a mean over the batch). ``params``, ``state`` and ``opt_state`` are donated:
    do not reuse the arrays you passed in. It compiles once per input shape.

    With ``mesh`` (a `jax.sharding.Mesh` with an axis ``"data"``, e.g.
    `nnrs_jax.parallel.data_mesh` or ``jax.make_mesh``), the step is data parallel: ``x`` and
    ``y`` are split over the mesh's ``"data"`` axis along their first axis
    (`nnrs_jax.parallel.shard_batch`; in a multi-process run each process passes its own block
    of rows), ``params``, ``state``, ``opt_state`` and ``key`` are replicated, and XLA adds the
    all-reduce of the gradients; every output is replicated.

    Examples:
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
    model = check_model("make_train_step", model)
    caller = "make_train_step"
    if not with_state and has_state(model):
        raise ValueError(
            f"{caller}: {model.name} keeps state (e.g. batch-norm running statistics); "
            "use make_train_step(..., with_state=True), whose step is "
            "step(params, state, opt_state, x, y, key) -> (params, state, opt_state, metrics)"
        )
    body = step_body(
        model, loss, optimizer, check_grads_mode(caller, grads), check_augment(caller, augment),
        metric_items(caller, metrics),
    )  # fmt: skip
    if mesh is not None:
        return _mesh_step(body, parallel.check_mesh(caller, mesh), with_state)
    return _stateful_step(body) if with_state else _stateless_step(body)


@functools.lru_cache(maxsize=64)
def _stateful_step(body: Body) -> Callable[..., tuple]:
    def step(params, state, opt_state, x, y, key=None):
        return body(params, state, opt_state, x, y, key)

    return jax.jit(step, donate_argnums=(0, 1, 2))


@functools.lru_cache(maxsize=64)
def _stateless_step(body: Body) -> Callable[..., tuple]:
    def step(params, opt_state, x, y, key=None):
        params, _, opt_state, metrics = body(params, None, opt_state, x, y, key)
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
        with parallel.scope(mesh):
            x = parallel.shard("make_train_step", x, mesh)
            y = parallel.shard("make_train_step", y, mesh)
            params, state, opt_state, key = parallel.replicate(
                (params, state, opt_state, key), mesh
            )
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
