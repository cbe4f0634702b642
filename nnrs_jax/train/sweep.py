"""`fit_many`: several models trained at once under ``jax.vmap`` (seeds, hyperparameters)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from nnrs_jax import parallel
from nnrs_jax.data_checks import check_data
from nnrs_jax.layers.base import Layer, check_model
from nnrs_jax.losses import Loss
from nnrs_jax.optim import Optimizer
from nnrs_jax.optim.templates import Template, instantiate, template
from nnrs_jax.train.feed import Layout, OnDevice
from nnrs_jax.train.loop import check_count, loop_settings, run_loop
from nnrs_jax.train.state import FitResult, TrainState, check_key, run_keys
from nnrs_jax.train.step import Body, check_grads_mode, make_body

__all__ = ["fit_many"]


@functools.lru_cache(maxsize=64)
def _many_body(model: Layer, loss: Loss, node: Any, grads: str, n: int) -> Body:
    """`fit`'s step under ``vmap`` over ``n`` models, each optimizer built from ``hyper``."""

    def body(params, state, opt_state, x, y, key, hyper=()):
        def one(p, s, o, h, k):
            return make_body(model, loss, instantiate(node, h), grads)(p, s, o, x, y, k)

        return jax.vmap(one)(params, state, opt_state, hyper, jax.random.split(key, n))

    return body


@functools.lru_cache(maxsize=8)
def _traced_many_body(model: Layer, loss: Loss, make: Callable, grads: str, n: int) -> Body:
    """As `_many_body`, for optimizers only ``make`` can build: ``make(hparam)`` traced."""

    def body(params, state, opt_state, x, y, key, hyper=()):
        def one(p, s, o, h, k):
            return make_body(model, loss, make(h), grads)(p, s, o, x, y, k)

        return jax.vmap(one)(params, state, opt_state, hyper, jax.random.split(key, n))

    return body


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

    Model ``i`` starts from ``model.init(split(init_key, n)[i])``; all models see the same data
    in the same order (a fair comparison), each with its own dropout keys. With ``hparams`` (an
    array with a leading axis of size ``n``), ``optimizer`` is a function
    ``hparam -> Optimizer``, e.g. ``lambda lr: nj.nadam(lr)`` over
    ``hparams=jnp.array([1e-3, 3e-3, 1e-2])``; otherwise one optimizer is shared and
    ``num_models`` says how many seeds. The compiled step is the vmapped step of `fit`, so
    ``n`` models cost far less than ``n`` separate runs.

    Compiled once: the function is called on each concrete ``hparams[i]``; where the results
    are the same optimizer but for some numbers (the library's optimizers compare by their
    settings), those numbers become arguments of the compiled step
    (`nnrs_jax.optim.templates`), so calling `fit_many` again, even with a new ``lambda`` or
    other values, reuses the compiled code. Numbers that differ between models must be ones
    the optimizer accepts as arrays (learning rates); anything else differing (a custom
    optimizer built from closures) makes the function be traced with ``hparams[i]`` as an
    array instead, compiled anew for each new function.

    With ``mesh`` (a `jax.sharding.Mesh` with a ``"data"`` axis), the model axis is split over
    the ``"data"`` axis: ``n`` must be divisible by its size, each device trains its models on
    a replicated copy of the data, and the returned params and states stay split over the mesh
    (the history is gathered).

    Returns:
        A `FitResult` whose params, opt_state, state and history leaves have a leading model
        axis (``history["loss"]`` is ``(steps or epochs, n)``); its step and key are shared.

    Examples:
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
    model = check_model("fit_many", model)
    caller = "fit_many"
    settings = loop_settings(caller, steps, epochs, batch_size, True, log_every, progress,
                             on_nonfinite)  # fmt: skip
    grads = check_grads_mode(caller, grads)
    if hparams is None:
        n = check_count(caller, "num_models", num_models, minimum=1)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{caller}: optimizer must be an Optimizer when no hparams are given")
        described: Template | None = Template(("static", optimizer), ())
    else:
        hparams = jnp.asarray(hparams)
        if hparams.ndim < 1 or hparams.shape[0] < 1:
            raise ValueError(
                f"{caller}: hparams needs a leading model axis, got shape {hparams.shape}"
            )
        if num_models not in (None, hparams.shape[0]):
            raise ValueError(
                f"{caller}: num_models {num_models} != len(hparams) {hparams.shape[0]}"
            )
        if isinstance(optimizer, Optimizer) or not callable(optimizer):
            raise TypeError(
                f"{caller}: with hparams, optimizer must be a function hparam -> Optimizer"
            )
        n = hparams.shape[0]
        described = template([optimizer(hparams[i]) for i in range(n)], hparams.dtype)
    if mesh is not None:
        mesh = parallel.check_mesh(caller, mesh)
        parallel.check_divisible(caller, "the number of models", n, mesh)
    if described is None:
        # Not the same optimizer up to numbers: trace the function itself on hparams[i].
        body, hyper, make = _traced_many_body(model, loss, optimizer, grads, n), hparams, optimizer
    else:
        body, hyper = _many_body(model, loss, described.template, grads, n), described.hyper

        def make(h: Any) -> Optimizer:
            return instantiate(described.template, h)

    key = check_key(caller, key)
    params = jax.vmap(model.init)(jax.random.split(run_keys(key)[0], n))
    opt_state = jax.vmap(lambda p, h: make(h).init(p))(params, hyper)
    state = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), model.init_state())
    first = jax.tree.map(lambda a: a[0], (params, state))
    x, y = check_data(caller, model, *first, x, y, loss)[:2]
    x, y = jax.device_put(x), jax.device_put(y)
    layout = Layout(mesh, models=True)
    with parallel.scope(mesh):
        if mesh is not None:
            x, y = parallel.replicate((x, y), mesh)
            hyper = parallel.distribute(hyper, parallel.split(mesh))
        if batch_size is None and grads == "manual":
            x = model.prepare(x)
        ts = TrainState(params, state, opt_state, jnp.asarray(0, jnp.int32), jnp.copy(key))
        return run_loop(body, ts, OnDevice(x, y), settings, None, layout, hyper)
