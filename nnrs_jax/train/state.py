"""`TrainState`: everything a run needs to continue, and `FitResult`, what `fit` returns."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.layers.base import Layer, Params, PRNGKey, State, check_model

__all__ = ["FitResult", "TrainState"]

OptState = Any


INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}
"""XLA options of the compiled ``model.init`` on the CPU: LLVM at ``-O2`` rather than ``-O3``.

The initializer runs once, and most of its program is the PRNG's unrolled hash: on the 2-core
Intel Xeon host of ``benchmarks/RESULTS.md`` ``-O3`` took 0.7–1.3 s to compile the recipes'
initializers and ``-O2`` 0.4–0.8 s, for the same parameters bit for bit
(``tests/test_train_state.py``). A training step is not compiled so: there ``-O2`` ran slower."""


@functools.lru_cache(maxsize=64)
def _compiled_init(model: Layer) -> Any:
    def init_on_run_key(key: PRNGKey) -> Params:
        return model.init(run_keys(key)[0])

    options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(init_on_run_key, compiler_options=options)


def init_params(model: Layer, key: PRNGKey) -> Params:
    """``model.init`` on the run's init key ``run_keys(key)[0]``: one compiled program, the
    key's split included (op by op, each of its few operations compiled a program of its own),
    one per equal model."""
    return _compiled_init(model)(key)


@functools.lru_cache(maxsize=64)
def _compiled_opt_init(optimizer: Any) -> Any:
    return jax.jit(optimizer.init)


def init_opt_state(optimizer: Any, params: Params) -> OptState:
    """``optimizer.init(params)`` as one compiled program, one per equal optimizer.

    Op by op, each leaf's ``zeros_like`` would be a program of its own, and XLA keeps every
    compiled program in memory. Run op by op as before: an optimizer that cannot be hashed,
    and parameters placed over several devices (a program over a mesh is traced inside it).
    """
    one_device = all(isinstance(a, jax.Array) and len(a.sharding.device_set) == 1
                     for a in jax.tree.leaves(params))  # fmt: skip
    try:
        init = _compiled_opt_init(optimizer) if one_device else optimizer.init
    except TypeError:
        init = optimizer.init
    return init(params)


class TrainState(NamedTuple):
    """Everything a training run needs to continue: a pytree, the carry of the compiled loop.

    Attributes:
        params: the model's parameters.
        state: the model's non-trainable state (``model.init_state()``'s tree, e.g. batch-norm
            running statistics; ``()`` for a model without).
        opt_state: the optimizer's state.
        step: the number of updates done, an ``int32`` scalar array.
        key: the run's root PRNG key. Step ``t`` draws its dropout masks and augmentations from
            ``fold_in(noise_key, t)`` and epoch ``e`` shuffles with ``fold_in(data_key, e)``
            (`run_keys`), so a run resumed from a `TrainState` repeats a straight run bit for bit.

    Examples:
        >>> import jax, nnrs_jax as nj
        >>> model, opt = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 3)), nj.adam(1e-2)
        >>> ts = nj.TrainState.create(model, opt, jax.random.key(0))
        >>> int(ts.step), ts.params[0].w.shape
        (0, (4, 8))
    """

    params: Params
    state: State
    opt_state: OptState
    step: jax.Array
    key: PRNGKey

    @classmethod
    def create(
        cls, model: Layer, optimizer: Any, key: PRNGKey, *, params: Params | None = None
    ) -> TrainState:
        """A fresh state: params from ``model.init`` on the run's init key (or ``params``)."""
        caller = "TrainState.create"
        model = check_model(caller, model)
        if not (
            callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))
        ):
            raise TypeError(f"{caller}: optimizer must have init and update (e.g. nj.adam(1e-3)), "
                            f"got {type(optimizer).__name__}")  # fmt: skip
        key = check_key(caller, key)
        if params is None:
            params = init_params(model, key)
        return cls(
            params,
            model.init_state(),
            init_opt_state(optimizer, params),
            jnp.int32(0),
            jnp.copy(key),
        )


def check_key(caller: str, key: Any) -> PRNGKey:
    """``key`` if it is a typed or legacy ``uint32`` PRNG key; a clear error otherwise."""
    if not isinstance(key, jax.Array) or not (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32
    ):
        raise TypeError(
            f"{caller}: key must be a PRNG key from jax.random.key(seed), got {type(key).__name__}"
        )
    return key


def run_keys(key: PRNGKey) -> tuple[PRNGKey, PRNGKey, PRNGKey]:
    """``(init_key, data_key, noise_key)`` of a run: params, shuffles and stochastic layers.

    Epoch ``e`` shuffles with ``fold_in(data_key, e)``; step ``t`` of the model (dropout) and
    of the augmentation uses ``fold_in(noise_key, t)``. Pure: callable inside ``jit``.
    """
    init_key, data_key = jax.random.split(key)
    return init_key, data_key, jax.random.split(data_key)[1]


class FitResult(NamedTuple):
    """What `fit` and `fit_many` return: the final `TrainState` and the history.

    Attributes:
        train_state: where training ended; pass it back as ``fit(..., train_state=...)`` to
            continue (or resume a stopped run) bit for bit.
        history: NumPy arrays. Full batch: ``step``, ``loss`` and the metrics per step (of the
            params before that step's update, as the seed printed them). Mini-batch: ``epoch``,
            ``loss`` and the metrics per epoch (means over its batches). With evaluation data
            (``eval_data`` or ``validation_split``): ``eval_step`` or ``eval_epoch`` and
            ``eval_<name>`` for each entry of the evaluation report.
        stopped: why training ended early: ``None`` (it ran to the end), ``"interrupted"``
            (Ctrl-C: the state of the last log point reached), or ``"callback"`` (a callback
            such as `nnrs_jax.callbacks.EarlyStopping` asked to stop).

    ``params``, ``opt_state``, ``state`` and ``step`` read the train state's fields.
    """

    train_state: TrainState
    history: dict[str, np.ndarray]
    stopped: str | None = None

    @property
    def params(self) -> Params:
        return self.train_state.params

    @property
    def opt_state(self) -> OptState:
        return self.train_state.opt_state

    @property
    def state(self) -> State:
        return self.train_state.state

    @property
    def step(self) -> int:
        return int(self.train_state.step)
