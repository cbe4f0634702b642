"""Evaluation: a classification `Report` (loss, accuracy, confusion matrix, per-class precision /
recall / F1) or a `RegressionReport` (loss, MSE, MAE, R²), with user metrics in both."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nnrs_jax._validate import check_float, check_int
from nnrs_jax.data_checks import Task, check_data
from nnrs_jax.layers.base import Layer, Params, State, check_model, forward, has_state
from nnrs_jax.losses import Loss, cross_entropy
from nnrs_jax.parallel import (
    assemble,
    check_mesh,
    data_size,
    process_rows,
    replicate,
    replicated,
    scope,
    split,
)

__all__ = ["Metric", "RegressionReport", "Report", "confusion_matrix", "evaluate"]

Metric = Callable[[jax.Array, jax.Array], jax.Array]
"""A user metric ``fn(outputs, targets) -> scalar``: the mean of a per-example quantity over the
batch it is given (as a loss is), e.g. ``lambda o, t: jnp.mean(jnp.abs(o - t) < 0.1)``."""

# The names of the reports' own scalars, which a user metric may not take.
_BUILT_IN = ("loss", "accuracy", "mse", "mae", "r2")


@dataclass(frozen=True)
class Report:
    """Classification report; rows of ``confusion_matrix`` are true classes, columns predicted.

    For class ``c``: ``TP = M[c, c]``, ``FP = Σ_r M[r, c] − TP``, ``FN = Σ_k M[c, k] − TP``,
    ``precision = TP/(TP+FP)``, ``recall = TP/(TP+FN)``, ``F1 = 2·P·R/(P+R)``; a ratio whose
    denominator is 0 (a class never predicted, or absent) takes the value ``zero_division``.
    Macro averages are the unweighted means over classes. ``metrics`` holds the user metrics
    given to `evaluate`, each averaged over all examples.
    """

    loss: float
    accuracy: float
    confusion_matrix: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    zero_division: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def macro_precision(self) -> float:
        return float(np.mean(self.precision))

    @property
    def macro_recall(self) -> float:
        return float(np.mean(self.recall))

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    def scalars(self) -> dict[str, float]:
        """``{"loss", "accuracy", **metrics}``: what a training log records (as ``eval_<name>``)."""
        return {"loss": self.loss, "accuracy": self.accuracy, **self.metrics}

    @classmethod
    def from_confusion(
        cls,
        matrix: np.ndarray,
        loss: float,
        zero_division: float = 0.0,
        metrics: Mapping[str, float] | None = None,
    ) -> Report:
        """Build a report from a confusion matrix (rows true, columns predicted)."""
        m = np.asarray(matrix, dtype=np.int64)
        tp = np.diag(m).astype(np.float64)
        predicted, actual = m.sum(axis=0), m.sum(axis=1)

        def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
            safe = np.where(den > 0, den, 1)
            return np.where(den > 0, num / safe, zero_division)

        precision, recall = ratio(tp, predicted), ratio(tp, actual)
        f1 = ratio(2 * precision * recall, precision + recall)
        accuracy = float(tp.sum() / max(m.sum(), 1))
        extra = {name: float(v) for name, v in (metrics or {}).items()}
        return cls(float(loss), accuracy, m, precision, recall, f1, zero_division, extra)

    def __str__(self) -> str:
        m = self.confusion_matrix
        width = len(str(m.max())) if m.size else 1
        rows = ",\n ".join("[" + ", ".join(f"{v:>{width}d}" for v in row) + "]" for row in m)
        lines = ["Confusion Matrix:", f"[{rows}]"]
        total = int(m.sum())
        for c in range(m.shape[0]):
            tp = int(m[c, c])
            fp, fn = int(m[:, c].sum()) - tp, int(m[c].sum()) - tp
            lines += [
                f"Class {c}: TP = {tp}, FP = {fp}, FN = {fn}, TN = {total - tp - fp - fn}",
                f"Precision = {self.precision[c]:.6f}",
                f"Recall(Sensitivity) = {self.recall[c]:.6f}",
                f"F1-score: = {self.f1[c]:.6f}",
                "-" * 45,
            ]
        lines += [
            f"Macro precision = {self.macro_precision:.6f}, recall = {self.macro_recall:.6f}, "
            f"F1 = {self.macro_f1:.6f}",
            f"Loss: {self.loss:.6f}",
            f"Accuracy: {100 * self.accuracy:.2f}%",
            *_metric_lines(self.metrics),
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class RegressionReport:
    """Regression report over ``n`` examples with targets and outputs ``t, y`` of shape ``(n, k)``.

    * ``loss``: the data loss, ``loss.value`` averaged over all examples;
    * ``mse = Σ (y − t)² / (n·k)`` and ``mae = Σ |y − t| / (n·k)``, over all elements;
    * ``r2 = (1/k)·Σ_j (1 − SS_res_j / SS_tot_j)`` with ``SS_res_j = Σ_i (y_ij − t_ij)²`` and
      ``SS_tot_j = Σ_i (t_ij − t̄_j)²`` about output ``j``'s mean: the coefficient of
      determination averaged uniformly over outputs, as scikit-learn's ``r2_score`` default
      (``multioutput="uniform_average"``). An output with constant targets (``SS_tot_j = 0``)
      scores 1 if predicted exactly, else 0 (scikit-learn's ``force_finite=True``);
    * ``metrics``: the user metrics given to `evaluate`, each averaged over all examples.
    """

    loss: float
    mse: float
    mae: float
    r2: float
    n: int
    metrics: dict[str, float] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """``{"loss", "mse", "mae", "r2", **metrics}``: what a training log records."""
        return {"loss": self.loss, "mse": self.mse, "mae": self.mae, "r2": self.r2, **self.metrics}

    def __str__(self) -> str:
        lines = [
            f"Regression on {self.n} examples",
            f"Loss: {self.loss:.6f}",
            f"MSE: {self.mse:.6f}",
            f"MAE: {self.mae:.6f}",
            f"R2: {self.r2:.6f}",
            *_metric_lines(self.metrics),
        ]
        return "\n".join(lines)


def _metric_lines(metrics: Mapping[str, float]) -> list[str]:
    return [f"{name}: {value:.6f}" for name, value in metrics.items()]


def confusion_matrix(labels: Any, predictions: Any, classes: int) -> np.ndarray:
    """``(classes, classes)`` matrix: ``M[t, p]`` counts true class ``t`` predicted as ``p``."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    flat = labels.astype(np.int64) * classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _batch_sums_fn(
    model: Layer,
    loss: Loss,
    task: Task,
    metrics: tuple[tuple[str, Metric], ...],
    params: Params,
    state: State,
    xb: jax.Array,
    yb: jax.Array,
    n: jax.Array,
) -> dict[str, Any]:
    """Sums over the first ``n`` rows of one padded batch, and what the report needs per row.

    ``loss`` and each metric are evaluated per example (a batch of one under `jax.vmap`), so the
    padded rows are excluded exactly. Classification adds the predicted classes; regression the
    per-output sums of squared and absolute errors. Compiled once per model, loss, task,
    metrics and batch shape: repeated `evaluate` calls reuse it.
    """
    outputs, _ = forward(model, params, xb, state=state)
    valid = jnp.arange(xb.shape[0], dtype=n.dtype) < n

    def total(name: str, fn: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
        def one(o: jax.Array, t: jax.Array) -> jax.Array:
            value = jnp.asarray(fn(o[None], t[None]))
            if value.shape != ():
                raise ValueError(
                    f"evaluate: {name} must return a scalar (the mean over its batch), got "
                    f"shape {value.shape}"
                )
            return value.astype(outputs.dtype)

        return jnp.sum(jnp.where(valid, jax.vmap(one)(outputs, yb), 0))

    sums: dict[str, Any] = {
        "loss": total(f"loss {loss.name}", loss.value),
        "metrics": {name: total(f"metric {name!r}", fn) for name, fn in metrics},
    }
    if task == "classification":
        sums["predictions"] = jnp.argmax(outputs, axis=-1)
    else:
        error = outputs - yb.astype(outputs.dtype)
        sums["squared"] = jnp.sum(jnp.where(valid[:, None], error * error, 0), axis=0)
        sums["absolute"] = jnp.sum(jnp.where(valid[:, None], jnp.abs(error), 0), axis=0)
    return sums


_batch_sums = jax.jit(_batch_sums_fn, static_argnums=(0, 1, 2, 3))


@functools.lru_cache(maxsize=8)
def _mesh_batch_sums(mesh: Mesh) -> Callable[..., dict[str, Any]]:
    """`_batch_sums` for batches split over ``mesh``: outputs replicated on every device."""
    return jax.jit(_batch_sums_fn, static_argnums=(0, 1, 2, 3), out_shardings=replicated(mesh))


def _check_metrics(metrics: Any) -> tuple[tuple[str, Metric], ...]:
    """``metrics`` as hashable ``(name, fn)`` pairs, in the order given."""
    if metrics is None:
        return ()
    if not isinstance(metrics, Mapping):
        raise TypeError(
            "evaluate: metrics must be a dict {name: fn(outputs, targets) -> scalar}, got "
            f"{type(metrics).__name__}"
        )
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"evaluate: metrics names must be non-empty strings, got {name!r}")
        if name in _BUILT_IN:
            raise ValueError(
                f"evaluate: metrics name {name!r} is taken by the report's own scalars "
                f"{_BUILT_IN}; choose another"
            )
        if not callable(fn):
            raise TypeError(
                f"evaluate: metrics[{name!r}] must be a function fn(outputs, targets) -> scalar, "
                f"got {type(fn).__name__}"
            )
    return tuple(metrics.items())


def evaluate(
    model: Layer,
    params: Params,
    x: Any,
    y: Any,
    loss: Loss = cross_entropy,
    *,
    batch_size: int = 1024,
    zero_division: float = 0.0,
    state: State = None,
    mesh: Mesh | None = None,
    metrics: Mapping[str, Metric] | None = None,
) -> Report | RegressionReport:
    """Evaluate a model on ``(x, y)`` in fixed-size batches (one compilation).

    The task follows `nnrs_jax.data_checks.task`: classification when ``y`` holds integer
    labels or ``loss`` is a classification loss (`cross_entropy`, `softmax_mse`), giving a
    `Report`; regression for float targets with a regression loss such as `mse`, giving a
    `RegressionReport`. Both have ``scalars()``, the numbers a training log records.

    ``loss`` is the data loss (no penalty), averaged over all examples. The last batch is padded
    to ``batch_size`` and the padding ignored, so any ``N`` costs one compile. The model runs in
    inference mode (``train=False``: no dropout, batch norm on its running statistics). The data
    are checked first by `nnrs_jax.data_checks.check_data` (the same checks as `fit`'s).

    Args:
        x: ``(N, ...)`` floats, e.g. ``(N, 784)`` or ``(N, 28, 28, 1)``; no ``NaN`` or ``inf``.
        y: classification: integer labels ``(N,)`` or one-hot ``(N, classes)`` (scored by
            its argmax, as labels); regression: float targets ``(N, k)`` for a model with ``k``
            outputs, or ``(N,)`` for a model with one output (read as ``(N, 1)``).
        loss: a `Loss` whose value is a mean over the batch (e.g. `cross_entropy`).
        batch_size: examples per compiled batch. The default, 1024, keeps a CNN's activations
            small (10 000 MNIST digits at once through `nnrs_jax.recipes.cnn` take 3 GB).
        zero_division: value of a precision/recall/F1 whose denominator is 0.
        state: the model state (`FitResult.state`); needed when the model has one.
        mesh: a `jax.sharding.Mesh` with a ``"data"`` axis (`nnrs_jax.parallel.data_mesh`,
            ``jax.make_mesh``): each batch is split over that axis, params and state
            replicated. The batch size is rounded up to a multiple of the axis's size (the
            padding is ignored). In a multi-process run every process passes the whole
            ``(x, y)`` and gets the report.
        metrics: ``{name: fn(outputs, targets) -> scalar}``, each the mean of a per-example
            quantity over its batch, as a loss is. ``targets`` are what the loss gets: int32
            labels ``(batch,)`` for classification, ``(batch, k)`` floats for regression. Each
            is evaluated per example, so padding is excluded exactly, and averaged over all
            examples into ``report.metrics``. Define the functions once: a new function
            compiles again.

    Returns:
        A `Report` (``str(report)`` prints the matrix and per-class lines like the seed) or a
        `RegressionReport`.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, nnrs_jax as nj
        >>> model = nj.serial(nj.dense(3, 1))
        >>> params = model.init(jax.random.key(0))
        >>> x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
        >>> report = nj.evaluate(model, params, x, x.sum(axis=1), nj.mse, metrics={
        ...     "within_1": lambda o, t: jnp.mean(jnp.abs(o - t) < 1)})
        >>> sorted(report.scalars())
        ['loss', 'mae', 'mse', 'r2', 'within_1']
    """
    model = check_model("evaluate", model)
    batch_size = check_int("evaluate", "batch_size", batch_size, low=1)
    zero_division = check_float("evaluate", "zero_division", zero_division)
    pairs = _check_metrics(metrics)
    if mesh is not None:
        mesh = check_mesh("evaluate", mesh)
    if state is None:
        if has_state(model):
            raise ValueError(
                f"evaluate: {model.name} keeps state (e.g. batch-norm running statistics); "
                "pass state=result.state"
            )
        state = model.init_state()
    x, y, task, outputs = check_data("evaluate", model, params, state, x, y, loss)
    if task == "classification" and y.ndim == 2:
        y = np.argmax(y, axis=1).astype(np.int32)

    size = min(batch_size, x.shape[0])
    sums_fn, place = _batch_sums, None
    if mesh is not None:
        blocks = data_size(mesh)
        size = -(-size // blocks) * blocks
        sums_fn, rows = _mesh_batch_sums(mesh), process_rows(mesh, size)

        def place(a: np.ndarray) -> jax.Array:
            return assemble(a[rows], split(mesh), a.shape)

    batches, counts = [], []
    with scope(mesh):
        if mesh is not None:
            params, state = replicate((params, state), mesh)
        for start in range(0, x.shape[0], size):
            xb, yb = x[start : start + size], y[start : start + size]
            n = xb.shape[0]
            if n < size:
                xb = np.concatenate([xb, np.zeros((size - n, *x.shape[1:]), x.dtype)])
                yb = np.concatenate([yb, np.zeros((size - n, *y.shape[1:]), y.dtype)])
            if place is not None:
                xb, yb = place(xb), place(yb)
            args = (params, state, xb, yb, np.asarray(n, np.int32))
            batches.append(sums_fn(model, loss, task, pairs, *args))
            counts.append(n)
        # One read-back at the end: the batches are dispatched without waiting for each other.
        batches = jax.device_get(batches)
    total = 0.0
    for b in batches:
        total += float(b["loss"])
    mean_loss, count = total / x.shape[0], x.shape[0]
    means = {name: sum(float(b["metrics"][name]) for b in batches) / count for name, _ in pairs}
    if task == "classification":
        predictions = np.concatenate([b["predictions"][:n] for b, n in zip(batches, counts)])
        matrix = confusion_matrix(y, predictions, outputs)
        return Report.from_confusion(matrix, mean_loss, zero_division, means)
    return _regression_report(y, batches, mean_loss, means)


def _regression_report(
    y: np.ndarray, batches: list[dict[str, Any]], loss: float, metrics: dict[str, float]
) -> RegressionReport:
    """MSE, MAE and R² from the per-output error sums of each batch and the targets ``y``."""
    squared = np.sum([b["squared"] for b in batches], axis=0, dtype=np.float64)
    absolute = np.sum([b["absolute"] for b in batches], axis=0, dtype=np.float64)
    t = y.astype(np.float64)
    total = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    constant = total == 0
    r2 = np.where(
        constant, np.where(squared == 0, 1.0, 0.0), 1 - squared / np.where(constant, 1, total)
    )
    mse, mae = float(squared.sum() / y.size), float(absolute.sum() / y.size)
    return RegressionReport(loss, mse, mae, float(r2.mean()), y.shape[0], metrics)
