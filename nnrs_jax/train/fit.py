"""`fit`: the keyword front door to the training loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nnrs_jax import parallel
from nnrs_jax.data_checks import check_data
from nnrs_jax.layers.base import Layer, Params, State, check_model
from nnrs_jax.losses import Loss
from nnrs_jax.metrics import evaluate as evaluate_report
from nnrs_jax.optim import Optimizer
from nnrs_jax.train.feed import Feed, Layout, OnDevice
from nnrs_jax.train.loop import Callback, check_count, loop_settings, run_loop
from nnrs_jax.train.state import FitResult, TrainState, check_key, init_opt_state, init_params
from nnrs_jax.train.step import (
    Augment,
    MetricFn,
    check_augment,
    check_grads_mode,
    metric_items,
    step_body,
)
from nnrs_jax.train.tuning import tune_step

__all__ = ["fit"]

OptState = Any


def fit(
    model: Layer,
    loss: Loss,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    *,
    key: jax.Array | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    train_state: TrainState | None = None,
    augment: Augment | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    callbacks: Sequence[Callback] = (),
    eval_data: tuple[Any, Any] | None = None,
    validation_split: float | None = None,
    eval_batch_size: int = 1024,
    log_every: int = 10,
    progress: bool = True,
    grads: Literal["manual", "autodiff"] = "manual",
    drop_last: bool = True,
    on_nonfinite: Literal["raise", "warn"] = "raise",
    mesh: Mesh | None = None,
    local_data: bool = False,
    params: Params | None = None,
    opt_state: OptState | None = None,
    state: State | None = None,
    step: int | None = None,
) -> FitResult:
    """Train ``model`` on ``(x, y)``: full-batch steps or shuffled mini-batch epochs.

    * ``batch_size=None``: ``steps`` full-batch gradient steps (the seed's mode), one jitted
      step each; metrics are read back every ``log_every`` steps (the log points). With
      ``grads="manual"`` and no ``augment``, the input goes once through ``model.prepare`` (a
      first `dense` layer keeps a transposed copy for a faster ``dW``).
    * ``batch_size=B``: ``epochs`` epochs, each one log point; each is one jitted
      ``lax.scan`` over the batches of a permutation drawn from ``fold_in(data_key, epoch)``,
      gathered on the device (`make_epoch`). The partial last batch is dropped unless
      ``drop_last=False`` (then it is one more step of the same compiled epoch).

    **Inside the compiled step** (no host round trips): ``augment(key, x_batch) -> x_batch``
    (e.g. `nnrs_jax.augment.random_shift`) runs on every batch with the step's own key, and
    ``metrics={name: fn(outputs, targets)}`` are computed on every batch and logged (means
    over the epoch). By default the metrics are ``accuracy`` when the targets are integer
    labels or the loss is a classification loss, and only the loss otherwise (regression).
    The compiled epoch is cached on these hooks: `nnrs_jax.augment` values compare by their
    settings, so ``random_shift(1)`` built anew reuses it, while a new ``lambda`` compiles
    again.

    **On the host, at log points**: the evaluation data (``eval_data=(x, y)``, or the last
    ``validation_split`` fraction of ``(x, y)``, held out before any shuffling) go through
    `nnrs_jax.evaluate` in batches of ``eval_batch_size``, and every entry of its report is
    logged as ``eval_<name>``; then each callback's ``on_log`` runs
    (`nnrs_jax.callbacks`: ``EarlyStopping``, ``BackupAndRestore``, ``CSVLogger``, or your
    own `nnrs_jax.callbacks.Callback`).

    **State and resuming.** Everything a run needs to continue is a `TrainState` (params,
    model state, optimizer state, step, key); `fit` returns it in `FitResult.train_state`,
    and ``fit(..., train_state=result.train_state, epochs=E)`` trains ``E`` more epochs
    exactly as a straight run would, bit for bit: step ``t``'s key is ``fold_in(noise_key,
    t)`` and epoch ``e``'s shuffle ``fold_in(data_key, e)`` (`nnrs_jax.train.run_keys`).
    ``params``/``opt_state``/``state``/``step`` with ``key`` do the same from parts (e.g. a
    checkpoint); ``step`` defaults to 0 for a new run and to ``opt_state.timestep`` when an
    optimizer state with that field is given. Whatever is given is copied, never donated.

    **Ctrl-C** (a `KeyboardInterrupt`, also a notebook's interrupt button) stops the run at
    the next log point and returns the `FitResult` of that point with ``stopped ==
    "interrupted"``; a second Ctrl-C aborts at once. A non-finite loss stops training with
    `FloatingPointError` naming the step (``on_nonfinite="warn"`` only warns). Bad data raises
    before anything is compiled. Calling `fit` again with the same model and loss and an
    equal optimizer (e.g. ``nj.adam(1e-3)`` built anew) reuses the compiled code.

    **Data parallel** (``mesh``, any `jax.sharding.Mesh` with a ``"data"`` axis, see
    `nnrs_jax.parallel`): each batch is split over the ``"data"`` axis, params, model state and
    optimizer state are replicated, and XLA all-reduces the gradients. The batches and their
    order are the one-device run's, so the results equal it to float32 rounding. The batch
    size (in full-batch training: the number of examples) must be divisible by the size of the
    ``"data"`` axis. Each epoch, every process gathers its slice of every batch on the host
    and puts it on its own devices. In a multi-process run every process makes the same call
    (after `nnrs_jax.parallel.initialize`), holding the whole dataset; only process 0 draws the
    progress bar. With ``local_data=True``, ``x``/``y`` are instead this process's own share of
    the examples (the same number per position of ``"data"`` on every process, and each
    position on one process's devices): each process shuffles its share with the same key,
    and every batch takes ``batch_size × (its positions / all positions)`` rows from each
    process.

    Args:
        model: the `Layer` to train.
        loss: the `Loss`, e.g. `nnrs_jax.cross_entropy`.
        optimizer: the `Optimizer`, e.g. ``nj.adam(1e-3)``.
        x: ``(N, ...)`` floats (e.g. ``(N, 784)`` or ``(N, 28, 28, 1)``).
        y: integer labels ``(N,)``, targets ``(N, k)``, or regression targets ``(N,)`` for
            one output.
        key: PRNG key for init, shuffling, stochastic layers and augmentation (not needed
            with ``train_state``, which holds it).
        train_state: continue from this `TrainState`.
        augment: an in-graph augmentation ``(key, x_batch) -> x_batch``.
        metrics: ``{name: fn(outputs, targets) -> scalar}``, computed in the step.
        callbacks: host callbacks run at log points.
        eval_data: ``(x_eval, y_eval)`` evaluated (inference mode) at each log point.
        validation_split: a fraction in (0, 1) of ``(x, y)``, its last rows, held out and
            evaluated instead of trained on.
        progress: show a progress bar (stderr) with the loss and the metrics.
        grads: ``"manual"`` (hand-written backward) or ``"autodiff"``.
        mesh: a `jax.sharding.Mesh` with a ``"data"`` axis to train data parallel on.
        local_data: with ``mesh``: ``x`` and ``y`` are this process's share of the data.
        params: start from these parameters instead of ``model.init``.
        opt_state: continue from this optimizer state.
        state: continue from this model state.
        step: the number of updates already done (else ``opt_state.timestep``, else 0).

    Returns:
        A `FitResult`: ``train_state``, ``history``, ``stopped``; ``.params``, ``.state``,
        ``.opt_state`` and ``.step`` read the train state.

    Examples:
        >>> import jax, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
        >>> result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y,
        ...                 key=jax.random.key(0), steps=50, progress=False)
        >>> bool(result.history["accuracy"][-1] > 0.9), result.step
        (True, 50)
        >>> more = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y,
        ...               train_state=result.train_state, steps=10, progress=False)
        >>> more.step
        60
    """
    model = check_model("fit", model)
    caller = "fit"
    settings = loop_settings(caller, steps, epochs, batch_size, drop_last, log_every, progress,
                             on_nonfinite)  # fmt: skip
    body_args = (model, loss, optimizer, check_grads_mode(caller, grads),
                 check_augment(caller, augment), metric_items(caller, metrics))  # fmt: skip
    body = step_body(*body_args)
    callbacks = _check_callbacks(caller, callbacks)
    if mesh is not None:
        mesh = parallel.check_mesh(caller, mesh)
    elif local_data:
        raise ValueError(f"{caller}: local_data=True describes data split over a mesh; "
                         "pass mesh=")  # fmt: skip
    if local_data and not drop_last:
        raise ValueError(f"{caller}: local_data=True needs drop_last=True (no partial last "
                         "batch)")  # fmt: skip
    check_count(caller, "eval_batch_size", eval_batch_size, minimum=1)
    ts = _start(model, optimizer, key, train_state, params, opt_state, state, step)
    x, y, eval_data = _split_validation(x, y, eval_data, validation_split, local_data)
    x, y = check_data(caller, model, ts.params, ts.state, x, y, loss)[:2]
    evaluate = None
    if eval_data is not None:
        x_eval, y_eval = check_data(caller, model, ts.params, ts.state, *eval_data, loss)[:2]

        def evaluate(params: Params, state: State) -> dict[str, float]:
            report = evaluate_report(model, params, x_eval, y_eval, loss, state=state,
                                     batch_size=eval_batch_size, mesh=mesh)  # fmt: skip
            return report.scalars()

    with parallel.scope(mesh):
        if mesh is None:
            data: OnDevice | Feed = OnDevice(jax.device_put(x), jax.device_put(y))
            # Implementations chosen by measurement (`nnrs_jax.autotune`), one device only.
            rows = data.rows if batch_size is None else min(batch_size, data.rows)
            tune_step(model, body, ts, data.x, data.y, rows)
            body = step_body(*body_args)
        else:
            data = Feed(mesh, x, y, local_data)
            if batch_size is None:
                data = OnDevice(*data.whole())
        if batch_size is None and grads == "manual" and augment is None:
            data = data._replace(x=model.prepare(data.x))
        return run_loop(body, ts, data, settings, evaluate, Layout(mesh), (), callbacks)


def _check_callbacks(caller: str, callbacks: Any) -> tuple[Callback, ...]:
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"{caller}: callbacks must be a list of callbacks (nj.callbacks.*), "
            f"got {type(callbacks).__name__}"
        )
    for callback in callbacks:
        if not all(hasattr(callback, hook) for hook in ("on_train_begin", "on_log",
                                                          "on_train_end")):  # fmt: skip
            raise TypeError(
                f"{caller}: {callback!r} is not a callback: it needs on_train_begin, on_log and "
                "on_train_end (subclass nj.callbacks.Callback)"
            )
    return tuple(callbacks)


def _start(
    model: Layer,
    optimizer: Optimizer,
    key: Any,
    train_state: TrainState | None,
    params: Params | None,
    opt_state: OptState | None,
    state: State | None,
    step: Any,
) -> TrainState:
    """The run's first `TrainState`: given whole, from parts, or fresh; always a copy."""
    caller = "fit"
    if train_state is not None:
        if not isinstance(train_state, TrainState):
            raise TypeError(f"{caller}: train_state must be a TrainState (result.train_state), "
                            f"got {type(train_state).__name__}")  # fmt: skip
        given = [n for n, v in (("params", params), ("opt_state", opt_state), ("state", state),
                                ("step", step)) if v is not None]  # fmt: skip
        if given:
            raise ValueError(f"{caller}: train_state holds {', '.join(given)}; pass one or the "
                             "other")  # fmt: skip
        if key is not None:
            same = np.array_equal(jax.random.key_data(check_key(caller, key)),
                                  jax.random.key_data(train_state.key))  # fmt: skip
            if not same:
                raise ValueError(f"{caller}: key differs from train_state.key; a resumed run "
                                 "keeps its key (leave key out)")  # fmt: skip
        return jax.tree.map(jnp.copy, train_state)
    if key is None:
        raise TypeError(f"{caller}: key must be a PRNG key from jax.random.key(seed), got None")
    key = check_key(caller, key)
    start = _start_step(step, opt_state)
    params = init_params(model, key) if params is None else jax.tree.map(jnp.copy, params)
    opt_state = (init_opt_state(optimizer, params) if opt_state is None
                 else jax.tree.map(jnp.copy, opt_state))  # fmt: skip
    state = model.init_state() if state is None else jax.tree.map(jnp.copy, state)
    return TrainState(params, state, opt_state, jnp.asarray(start, jnp.int32), jnp.copy(key))


def _start_step(step: Any, opt_state: OptState | None) -> int:
    """The number of updates already done: ``step``, else ``opt_state.timestep``, else 0."""
    if step is not None:
        return check_count("fit", "step", step, minimum=0)
    if opt_state is None:
        return 0
    timestep = getattr(opt_state, "timestep", None)
    if timestep is None:
        raise ValueError(
            "fit: resuming from an opt_state without a timestep field; pass step=result.step "
            "(the number of updates already done)"
        )
    return int(timestep)


def _split_validation(
    x: Any, y: Any, eval_data: Any, fraction: Any, local_data: bool
) -> tuple[Any, Any, Any]:
    """``(x, y, eval_data)`` with the last ``fraction`` of the rows held out for evaluation."""
    if eval_data is not None and (not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2):
        raise TypeError(f"fit: eval_data must be a pair (x_eval, y_eval), got "
                        f"{type(eval_data).__name__}")  # fmt: skip
    if fraction is None:
        return x, y, eval_data
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (float, int, np.floating))
        or not (0 < fraction < 1)
    ):
        raise ValueError(f"fit: validation_split must be a float in (0, 1), got {fraction!r}")
    if eval_data is not None:
        raise ValueError("fit: pass eval_data or validation_split, not both")
    if local_data:
        raise ValueError("fit: validation_split needs the whole data set on every process; "
                         "with local_data=True pass eval_data")  # fmt: skip
    rows = getattr(x, "shape", (0,))[0] if getattr(x, "ndim", 0) else 0
    keep = int(rows * (1 - fraction))
    if keep < 1 or keep >= rows:
        raise ValueError(f"fit: validation_split {fraction} of {rows} examples leaves "
                         f"{keep} to train on and {rows - keep} to evaluate")  # fmt: skip
    return x[:keep], y[:keep], (x[keep:], y[keep:])
