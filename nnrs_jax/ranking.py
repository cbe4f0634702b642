"""Rank training variants (optimizers, activations) on MNIST fairly, and test a claimed order.

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

A claimed order such as ``"RMSProp ~ Nadam > AdaMax"`` is checked pair by pair along the claim
with Welch's t-test on the seeds' test accuracies (two-sided, level ``alpha``): ``A > B`` holds
when A is significantly better, is reversed when B is significantly better, and is otherwise not
distinguishable; ``A ~ B`` holds when the two are not distinguishable and differs otherwise.
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_float, check_int
from nnrs_jax.layers import Layer, dense, elu, leaky_relu, relu, selu, serial, sigmoid, tanh
from nnrs_jax.layers.base import Params
from nnrs_jax.losses import cross_entropy
from nnrs_jax.optim import Optimizer, adam, adamax, momentum, nadam, nesterov, rmsprop, sgd
from nnrs_jax.train import fit_many

__all__ = [
    "ACTIVATION_CLAIM",
    "FULL",
    "OPTIMIZER_CLAIM",
    "QUICK",
    "Protocol",
    "Ranking",
    "TTest",
    "Variant",
    "VariantResult",
    "Verdict",
    "activation_variants",
    "check_claim",
    "describe",
    "format_ranking",
    "format_verdicts",
    "optimizer_variants",
    "parse_claim",
    "rank",
    "summary",
    "welch_t_test",
]

OPTIMIZER_CLAIM = "RMSProp ~ Nadam > AdaMax > Adam > Nesterov > Momentum > SGD > GD"
ACTIVATION_CLAIM = "SELU > ELU > leaky ReLU > ReLU > tanh > logistic"


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


class TTest(NamedTuple):
    """Welch's t-test of ``mean(a) - mean(b)``: statistic, degrees of freedom, two-sided p."""

    t: float
    df: float
    p: float


class Verdict(NamedTuple):
    """One pair of a claimed order and what the data say about it.

    Attributes:
        better, worse: the names, as claimed (``better > worse`` or ``better ~ worse``).
        relation: ``">"`` or ``"~"``.
        difference: mean test accuracy of ``better`` minus that of ``worse``, in points.
        test: the Welch t-test of that difference.
        verdict: ``"holds"``, ``"reversed"`` or ``"not distinguishable"`` for ``>``;
            ``"holds"`` or ``"differs"`` for ``~``.
    """

    better: str
    relation: str
    worse: str
    difference: float
    test: TTest
    verdict: str


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
def _accuracies(model: Layer, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Accuracy of each of the stacked models (leading axis of ``params``) on ``(x, y)``."""

    def one(p: Params) -> jax.Array:
        hits = jnp.argmax(model.apply(p, x), axis=-1).astype(y.dtype) == y
        return jnp.mean(hits.astype(jnp.float32))

    return jax.vmap(one)(params)


def _train(
    variant: Variant, rates: np.ndarray, x: np.ndarray, y: np.ndarray, key: jax.Array, p: Protocol
) -> tuple[Params, dict[str, np.ndarray]]:
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
    return result.params, result.history


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

    Example:
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
        params, history = _train(v, grid, x_fit, y_fit, search_key, protocol)
        validation = np.asarray(_accuracies(v.model, params, x_val, y_val), np.float64)
        validation[~np.isfinite(history["loss"]).all(axis=0)] = np.nan
        if np.isnan(validation).all():
            raise FloatingPointError(
                f"rank: {v.name}: every learning rate of the grid {v.grid} diverged"
            )
        best = v.grid[int(np.nanargmax(validation))]
        rates = np.full((protocol.seeds,), best, np.float32)
        params, history = _train(v, rates, x_fit, y_fit, seeds_key, protocol)
        test = np.asarray(_accuracies(v.model, params, x_test, y_test), np.float64)
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


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (continued fraction, Lentz).

    Reference: Press et al., Numerical Recipes, 3rd ed., section 6.4.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast for x below the mean; above it, use I_x(a, b) = 1 - I_1-x(b, a).
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, 1000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d, c = 1.0 / guard(1.0 + even * d), guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d, c = 1.0 / guard(1.0 + odd * d), guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"_betainc: no convergence for a={a}, b={b}, x={x}")


def welch_t_test(a: Any, b: Any) -> TTest:
    """Welch's two-sample t-test of ``mean(a) - mean(b)``, unequal variances, two-sided.

    .. math::

        t = \\frac{\\bar a - \\bar b}{\\sqrt{s_a^2/n_a + s_b^2/n_b}}, \\qquad
        \\nu = \\frac{(s_a^2/n_a + s_b^2/n_b)^2}
                    {\\frac{(s_a^2/n_a)^2}{n_a - 1} + \\frac{(s_b^2/n_b)^2}{n_b - 1}},
        \\qquad p = I_{\\nu/(\\nu + t^2)}(\\nu/2, 1/2)

    with sample variances ``s²`` (ddof 1) and ``I`` the regularized incomplete beta function
    (the Student t tail). When both samples have zero variance, ``p`` is 1 for equal means and
    0 otherwise. Reference: Welch 1947, "The generalization of Student's problem".

    Args:
        a, b: 1-D samples of at least two values each.

    Example:
        >>> from nnrs_jax.ranking import welch_t_test
        >>> r = welch_t_test([0.91, 0.92, 0.93], [0.90, 0.91, 0.92])
        >>> round(r.t, 4), round(r.df, 1), round(r.p, 4)
        (1.2247, 4.0, 0.2879)
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for name, s in (("a", a), ("b", b)):
        if s.ndim != 1 or len(s) < 2 or not np.isfinite(s).all():
            raise ValueError(
                f"welch_t_test: {name} must be a 1-D sample of at least 2 finite values, got "
                f"shape {s.shape}"
            )
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    diff = float(np.mean(a) - np.mean(b))
    if va + vb == 0:
        return TTest(math.copysign(math.inf, diff) if diff else 0.0, len(a) + len(b) - 2.0,
                     0.0 if diff else 1.0)  # fmt: skip
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return TTest(float(t), float(df), _betainc(float(df) / 2, 0.5, float(df / (df + t * t))))


def parse_claim(claim: str) -> list[tuple[str, str, str]]:
    """``"A ~ B > C"`` -> ``[("A", "~", "B"), ("B", ">", "C")]``: the claim's adjacent pairs.

    Example:
        >>> from nnrs_jax.ranking import parse_claim
        >>> parse_claim("SELU > ELU > leaky ReLU")
        [('SELU', '>', 'ELU'), ('ELU', '>', 'leaky ReLU')]
    """
    parts = [p.strip() for p in re.split(r"\s*([>~])\s*", claim.strip())]
    names, relations = parts[::2], parts[1::2]
    if len(names) < 2 or not all(names):
        raise ValueError(
            f"parse_claim: a claim is names joined by '>' or '~', e.g. 'A ~ B > C', got {claim!r}"
        )
    return [(names[i], relations[i], names[i + 1]) for i in range(len(relations))]


def check_claim(ranking: Ranking, claim: str) -> list[Verdict]:
    """Test each adjacent pair of ``claim`` on the seeds' test accuracies of ``ranking``.

    The Welch t-test runs at the protocol's level ``alpha``, pair by pair, without correction
    for the number of pairs.
    """
    alpha = ranking.protocol.alpha
    verdicts = []
    for better, relation, worse in parse_claim(claim):
        a, b = ranking.result(better), ranking.result(worse)
        test = welch_t_test(a.test, b.test)
        diff = a.mean - b.mean
        distinct = test.p < alpha
        if relation == "~":
            verdict = "differs" if distinct else "holds"
        elif not distinct:
            verdict = "not distinguishable"
        else:
            verdict = "holds" if diff > 0 else "reversed"
        verdicts.append(Verdict(better, relation, worse, diff, test, verdict))
    return verdicts


def describe(protocol: Protocol, available: int = 50_000) -> str:
    """The protocol in words, with its numbers.

    ``available``: the training images left after the validation split, all of which are used
    when ``protocol.train_size`` is None.
    """
    p = protocol
    train_size = available if p.train_size is None else p.train_size
    per_epoch = train_size // p.batch_size
    epochs = p.steps / per_epoch if per_epoch else math.nan
    return (
        f"Each variant: the learning rate with the best validation accuracy on its log-grid "
        f"(one run per rate; {p.validation_size} training images held out for validation, never "
        f"the test set), then {p.seeds} seeds at that rate in one vmapped fit_many call, scored "
        f"on the test set. Budget: {p.steps} updates per run for every variant, "
        f"mini-batch ones in batches of {p.batch_size} ({epochs:g} epochs of the {train_size} "
        f"training images), GD in full-batch steps over the same images. Seed i starts from "
        f"the same initial weights in every variant (where the initializer agrees) and sees the "
        f"same batches. Claimed pairs: Welch t-test, two-sided, alpha = {p.alpha:g}."
    )


def _edge(r: VariantResult) -> bool:
    return r.learning_rate in (r.grid[0], r.grid[-1])


def format_ranking(ranking: Ranking) -> str:
    """The table ``variant | lr | test % mean ± sd | rank`` (Markdown), in the variants' order.

    A learning rate on the edge of its grid is starred; diverged seeds are noted.
    """
    ranks = ranking.ranks()
    width = max(len("variant"), *(len(r.name) for r in ranking.results))
    lines = [
        f"| {'variant':<{width}} | lr       | test % mean ± sd | rank |",
        f"|{'-' * (width + 2)}|----------|------------------|------|",
    ]
    for r in ranking.results:
        lr = f"{r.learning_rate:g}" + ("*" if _edge(r) else "")
        cell = f"{r.mean:.2f} ± {r.sd:.2f}"
        lines.append(f"| {r.name:<{width}} | {lr:<8} | {cell:<16} | {ranks[r.name]:>4} |")
    if any(_edge(r) for r in ranking.results):
        lines.append("* the best rate of the grid lies on its edge")
    lines += [f"{r.name}: {r.diverged} seed(s) diverged" for r in ranking.results if r.diverged]
    return "\n".join(lines)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The table ``claim | difference | p | verdict`` (Markdown), one row per claimed pair."""
    claims = [f"{v.better} {v.relation} {v.worse}" for v in verdicts]
    width = max(len("claim"), *(len(c) for c in claims))
    lines = [
        f"| {'claim':<{width}} | difference (points) | p (Welch) | verdict             |",
        f"|{'-' * (width + 2)}|---------------------|-----------|---------------------|",
    ]
    for claim, v in zip(claims, verdicts):
        lines.append(
            f"| {claim:<{width}} | {v.difference:>+19.2f} | {v.test.p:>9.3f} | {v.verdict:<19} |"
        )
    return "\n".join(lines)


def summary(what: str, verdicts: Sequence[Verdict], ranking: Ranking) -> str:
    """One line: how many claimed orderings hold, and how the others fared."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    held = counts.pop("holds", 0)
    others = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    p = ranking.protocol
    return (
        f"{what}: {held} of {len(verdicts)} claimed orderings hold"
        + (f" ({others})" if others else "")
        + f"; Welch t-test, two-sided, alpha = {p.alpha:g}, {p.seeds} seeds per variant"
    )
