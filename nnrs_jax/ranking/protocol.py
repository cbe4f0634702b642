"""The ranking protocol: variants, their runs with `fit_many`, the validation-chosen rate.

The protocol, the same for every variant of a ranking:

1. **Validation split.** A fixed random ``validation_size`` images of the training set (NumPy
   seed 0) are set aside; the rest (or its first ``train_size``) is the training part. The test
   set is never looked at until step 3.
2. **Learning rate.** The variant trains once per learning rate of its small log-grid (half-decade
   steps) on the training part; the rate with the best validation accuracy wins. A run whose loss
   turns non-finite counts as diverged and is never chosen.
3. **Seeds.** ``seeds`` models train at that rate in one vmapped `fit_many` call; their test
   accuracies give the mean and standard deviation.
4. **Budget.** Every run takes exactly ``steps`` updates: mini-batch variants in shuffled epochs of
   ``batch_size`` (so ``steps`` is a whole number of epochs), full-batch variants (gradient
   descent) ``steps`` full-batch steps.
5. **Matched seeds.** Every variant uses the same keys: seed ``i`` starts from the same initial
   weights wherever the shapes and the initializer agree, and all mini-batch runs see the batches
   in the same order.

Accuracies are measured in inference mode, with the model state the runs end with: batch norm
uses its running statistics.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_float, check_int
from nnrs_jax.layers import Layer, dense, elu, leaky_relu, relu, selu, serial, sigmoid, tanh
from nnrs_jax.layers.base import Params, State, forward
from nnrs_jax.losses import cross_entropy
from nnrs_jax.optim import Optimizer, adam, adamax, momentum, nadam, nesterov, rmsprop, sgd
from nnrs_jax.train import fit_many

__all__ = [
    "FULL",
    "QUICK",
    "Protocol",
    "Ranking",
    "Variant",
    "VariantResult",
    "activation_variants",
    "optimizer_variants",
    "rank",
]


class Variant(NamedTuple):
    """One contestant of a ranking.

    Attributes:
        name: as it appears in the table and in claims, e.g. ``"Adam"``.
        model: the network to train.
        optimizer: a function ``learning_rate -> Optimizer`` (e.g. `nnrs_jax.adam`), called with
            a traced scalar under ``vmap``.
        grid: the learning rates to search.
        full_batch: train with full-batch steps instead of mini-batch epochs.
    """

    name: str
    model: Layer
    optimizer: Callable[[Any], Optimizer]
    grid: tuple[float, ...]
    full_batch: bool = False


class Protocol(NamedTuple):
    """The settings of a ranking, shared by all its variants (defaults: the full run).

    Attributes:
        steps: updates per run, for every variant.
        batch_size: examples per update of the mini-batch variants.
        seeds: models trained at the chosen learning rate (at least 2, for a standard deviation).
        validation_size: training images set aside to choose the learning rate.
        train_size: training images used (``None``: all those left after the validation split).
        alpha: level of the two-sided Welch t-tests.
        seed: the PRNG seed all keys derive from.
    """

    steps: int = 500
    batch_size: int = 100
    seeds: int = 10
    validation_size: int = 10_000
    train_size: int | None = 10_000
    alpha: float = 0.05
    seed: int = 0


FULL = Protocol()
# Small settings for a smoke test: a few seconds per variant, the same code path.
QUICK = Protocol(steps=40, batch_size=100, seeds=3, validation_size=1_000, train_size=2_000)


class VariantResult(NamedTuple):
    """What `rank` measured for one variant.

    Attributes:
        name: the variant's name.
        learning_rate: the rate chosen on the validation split.
        grid: the rates searched.
        validation: ``(len(grid),)`` validation accuracy of each search run (NaN: diverged).
        test: ``(seeds,)`` test accuracy of each seed at the chosen rate, a fraction.
        curve_steps: ``(points,)`` where the training-loss curve is sampled: every step for a
            full-batch variant, the middle of each epoch for a mini-batch one (epoch means).
        curve_loss: ``(points, seeds)`` training loss (penalty included) of each seed.
        diverged: how many of the seeds ended with a non-finite loss.
        seconds: wall time of the variant's search and seed runs, compilation included.
    """

    name: str
    learning_rate: float
    grid: tuple[float, ...]
    validation: np.ndarray
    test: np.ndarray
    curve_steps: np.ndarray
    curve_loss: np.ndarray
    diverged: int
    seconds: float

    @property
    def mean(self) -> float:
        """Mean test accuracy in percent."""
        return 100 * float(np.mean(self.test))

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof 1) of the test accuracy, in percent."""
        return 100 * float(np.std(self.test, ddof=1))


class Ranking(NamedTuple):
    """The results of `rank`, in the order of its variants, with the protocol that made them."""

    results: tuple[VariantResult, ...]
    protocol: Protocol
    train_size: int

    def ranks(self) -> dict[str, int]:
        """Variant name -> rank by mean test accuracy (1 = best; ties share the better rank)."""
        means = {r.name: r.mean for r in self.results}
        return {name: 1 + sum(other > m for other in means.values()) for name, m in means.items()}

    def result(self, name: str) -> VariantResult:
        """The result of the variant called ``name``."""
        for r in self.results:
            if r.name == name:
                return r
        names = ", ".join(r.name for r in self.results)
        raise ValueError(f"Ranking.result: no variant named {name!r}; the variants are {names}")


def _mlp(activation: Layer, init: str) -> Layer:
    return serial(dense(784, 16, init=init), activation, dense(16, 10, init=init))


# Half-decade grids (1, 3, 10, ...) centred where each family's rate works on this network;
# `rank` marks a chosen rate that falls on a grid's edge.
ADAPTIVE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MOMENTUM_GRID = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SGD_GRID = (3e-2, 1e-1, 3e-1, 1.0, 3.0)


def optimizer_variants() -> tuple[Variant, ...]:
    """The optimizers of `OPTIMIZER_CLAIM` on the 784-16-10 ELU network (He init).

    GD is `sgd` with full-batch steps; every other optimizer trains on mini-batches. Each uses
    the library's default hyperparameters besides the learning rate (momentum 0.9, RMSProp decay
    0.9, Adam-family betas 0.9 / 0.999, eps 1e-7).
    """
    model = _mlp(elu(), "he")
    return (
        Variant("RMSProp", model, rmsprop, ADAPTIVE_GRID),
        Variant("Nadam", model, nadam, ADAPTIVE_GRID),
        Variant("AdaMax", model, adamax, ADAPTIVE_GRID),
        Variant("Adam", model, adam, ADAPTIVE_GRID),
        Variant("Nesterov", model, nesterov, MOMENTUM_GRID),
        Variant("Momentum", model, momentum, MOMENTUM_GRID),
        Variant("SGD", model, sgd, SGD_GRID),
        Variant("GD", model, sgd, SGD_GRID, full_batch=True),
    )


def activation_variants() -> tuple[Variant, ...]:
    """The activations of `ACTIVATION_CLAIM` in the 784-16-10 network, each trained with Adam.

    The project's convention for the initialization: LeCun for SELU (what its self-normalising
    property assumes), He for the others. Leaky ReLU has slope 0.01, ELU alpha 1.
    """
    return (
        Variant("SELU", _mlp(selu(), "lecun"), adam, ADAPTIVE_GRID),
        Variant("ELU", _mlp(elu(), "he"), adam, ADAPTIVE_GRID),
        Variant("leaky ReLU", _mlp(leaky_relu(), "he"), adam, ADAPTIVE_GRID),
        Variant("ReLU", _mlp(relu(), "he"), adam, ADAPTIVE_GRID),
        Variant("tanh", _mlp(tanh(), "he"), adam, ADAPTIVE_GRID),
        Variant("logistic", _mlp(sigmoid(), "he"), adam, ADAPTIVE_GRID),
    )


def _check_protocol(protocol: Protocol) -> Protocol:
    if not isinstance(protocol, Protocol):
        raise TypeError(f"rank: protocol must be a Protocol, got {type(protocol).__name__}")
    check_int("rank", "steps", protocol.steps, low=1)
    check_int("rank", "batch_size", protocol.batch_size, low=1)
    check_int("rank", "seeds", protocol.seeds, low=2)
    check_int("rank", "validation_size", protocol.validation_size, low=1)
    if protocol.train_size is not None:
        check_int("rank", "train_size", protocol.train_size, low=1)
    check_float("rank", "alpha", protocol.alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("rank", "seed", protocol.seed, low=0)
    return protocol


def _split(x: Any, y: Any, protocol: Protocol) -> tuple[np.ndarray, ...]:
    """``(x_fit, y_fit, x_val, y_val)``: a fixed random validation split of the training set."""
    n = len(x)
    rest = n - protocol.validation_size
    if rest < 1:
        raise ValueError(
            f"rank: validation_size {protocol.validation_size} leaves no training images out of {n}"
        )
    if protocol.train_size is not None and protocol.train_size > rest:
        raise ValueError(
            f"rank: train_size {protocol.train_size} exceeds the {rest} training images left "
            f"after the validation split of {protocol.validation_size}"
        )
    order = np.random.default_rng(0).permutation(n)
    val, fit = order[: protocol.validation_size], order[protocol.validation_size :]
    fit = np.sort(fit[: protocol.train_size])
    return x[fit], y[fit], x[np.sort(val)], y[np.sort(val)]


@functools.partial(jax.jit, static_argnums=0)
def _accuracies(
    model: Layer, params: Params, state: State, x: jax.Array, y: jax.Array
) -> jax.Array:
    """Accuracy of each of the stacked models (leading axis of ``params`` and ``state``).

    Inference mode: a layer with state (batch norm) uses its running statistics.
    """

    def one(p: Params, s: State) -> jax.Array:
        hits = jnp.argmax(forward(model, p, x, state=s)[0], axis=-1).astype(y.dtype) == y
        return jnp.mean(hits.astype(jnp.float32))

    return jax.vmap(one)(params, state)


def _train(
    variant: Variant, rates: np.ndarray, x: np.ndarray, y: np.ndarray, key: jax.Array, p: Protocol
) -> tuple[Params, State, dict[str, np.ndarray]]:
    """One `fit_many` call: model ``i`` trains at ``rates[i]`` from ``split(init_key, n)[i]``."""
    budget = (
        {"steps": p.steps}
        if variant.full_batch
        else {"epochs": p.steps // (len(x) // p.batch_size), "batch_size": p.batch_size}
    )
    # A rate that diverges is a finding, not an error: its non-finite loss is recorded below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = fit_many(
            variant.model, cross_entropy, variant.optimizer, x, y, key=key,
            hparams=rates, progress=False, on_nonfinite="warn", **budget,
        )  # fmt: skip
    return result.params, result.state, result.history


def rank(
    variants: Sequence[Variant],
    x: Any,
    y: Any,
    x_test: Any,
    y_test: Any,
    protocol: Protocol = FULL,
    *,
    progress: Callable[[VariantResult], None] | None = None,
) -> Ranking:
    """Train every variant by the protocol of this module and measure its test accuracy.

    Args:
        variants: the contestants, e.g. `optimizer_variants()`; names must be unique.
        x, y: the training set, ``(N, 784)`` floats and ``(N,)`` int labels; the validation
            split is carved from it.
        x_test, y_test: the test set, used only for the final accuracies.
        protocol: the shared settings (`Protocol()` is the full run, `QUICK` a smoke test).
        progress: called with each variant's result as soon as it is done.

    Returns:
        A `Ranking`, its results in the order of ``variants``.

    Raises:
        ValueError: duplicate names, an empty grid, a split larger than the data, or (with a
            mini-batch variant) ``steps`` not a whole number of epochs.

    Examples:
        >>> import numpy as np, nnrs_jax as nj
        >>> from nnrs_jax import ranking
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((600, 784), np.float32); y = (x[:, 0] > 0.5).astype(np.int32)
        >>> gd = ranking.optimizer_variants()[-1]._replace(grid=(0.1, 0.3))
        >>> small = ranking.Protocol(steps=5, seeds=2, validation_size=100, train_size=None)
        >>> gd_result = ranking.rank([gd], x, y, x[:100], y[:100], small).results[0]
        >>> gd_result.learning_rate in gd.grid, gd_result.test.shape, gd_result.curve_loss.shape
        (True, (2,), (5, 2))
    """
    protocol = _check_protocol(protocol)
    names = [v.name for v in variants]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"rank: variants must be non-empty with unique names, got {names}")
    for v in variants:
        if not v.grid or not all(isinstance(r, float) and r > 0 for r in v.grid):
            raise ValueError(f"rank: {v.name}: grid must hold floats > 0, got {v.grid!r}")
    x_fit, y_fit, x_val, y_val = _split(np.asarray(x), np.asarray(y), protocol)
    per_epoch = len(x_fit) // protocol.batch_size
    if any(not v.full_batch for v in variants) and (per_epoch == 0 or protocol.steps % per_epoch):
        raise ValueError(
            f"rank: steps must be a whole number of epochs: one epoch of batch "
            f"{protocol.batch_size} over {len(x_fit)} training images is {per_epoch} steps, "
            f"got steps={protocol.steps}"
        )
    search_key, seeds_key = jax.random.split(jax.random.key(protocol.seed))
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    results = []
    for v in variants:
        start = time.perf_counter()
        grid = np.asarray(v.grid, np.float32)
        params, state, history = _train(v, grid, x_fit, y_fit, search_key, protocol)
        validation = np.asarray(_accuracies(v.model, params, state, x_val, y_val), np.float64)
        validation[~np.isfinite(history["loss"]).all(axis=0)] = np.nan
        if np.isnan(validation).all():
            raise FloatingPointError(
                f"rank: {v.name}: every learning rate of the grid {v.grid} diverged"
            )
        best = v.grid[int(np.nanargmax(validation))]
        rates = np.full((protocol.seeds,), best, np.float32)
        params, state, history = _train(v, rates, x_fit, y_fit, seeds_key, protocol)
        test = np.asarray(_accuracies(v.model, params, state, x_test, y_test), np.float64)
        loss = np.asarray(history["loss"], np.float64)
        steps = np.arange(len(loss)) if v.full_batch else (np.arange(len(loss)) + 0.5) * per_epoch
        result = VariantResult(
            v.name, best, v.grid, validation, test, steps, loss,
            int((~np.isfinite(loss).all(axis=0)).sum()), time.perf_counter() - start,
        )  # fmt: skip
        results.append(result)
        if progress is not None:
            progress(result)
    return Ranking(tuple(results), protocol, len(x_fit))
