"""Evaluation: loss, accuracy, confusion matrix and per-class precision / recall / F1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nnrs_jax.layers.base import Layer, Params, State, forward, has_state
from nnrs_jax.losses import Loss, cross_entropy
from nnrs_jax.parallel import assemble, check_mesh, process_rows, replicate, replicated, split

__all__ = ["Report", "confusion_matrix", "evaluate"]


@dataclass(frozen=True)
class Report:
    """Classification report; rows of ``confusion_matrix`` are true classes, columns predicted.

    For class ``c``: ``TP = M[c, c]``, ``FP = Σ_r M[r, c] − TP``, ``FN = Σ_k M[c, k] − TP``,
    ``precision = TP/(TP+FP)``, ``recall = TP/(TP+FN)``, ``F1 = 2·P·R/(P+R)``; a ratio whose
    denominator is 0 (a class never predicted, or absent) takes the value ``zero_division``.
    Macro averages are the unweighted means over classes.
    """

    loss: float
    accuracy: float
    confusion_matrix: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    zero_division: float = 0.0

    @property
    def macro_precision(self) -> float:
        return float(np.mean(self.precision))

    @property
    def macro_recall(self) -> float:
        return float(np.mean(self.recall))

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    @classmethod
    def from_confusion(cls, matrix: np.ndarray, loss: float, zero_division: float = 0.0) -> Report:
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
        return cls(float(loss), accuracy, m, precision, recall, f1, zero_division)

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
        ]
        return "\n".join(lines)


def confusion_matrix(labels: Any, predictions: Any, classes: int) -> np.ndarray:
    """``(classes, classes)`` matrix: ``M[t, p]`` counts true class ``t`` predicted as ``p``."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    flat = labels.astype(np.int64) * classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _batch_stats_fn(
    model: Layer,
    loss: Loss,
    params: Params,
    state: State,
    xb: jax.Array,
    yb: jax.Array,
    n: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Summed loss over the first ``n`` rows and the predictions of one padded batch.

    Compiled once per model, loss and batch shape: repeated `evaluate` calls reuse it.
    """
    outputs, _ = forward(model, params, xb, state=state)
    valid = jnp.arange(xb.shape[0], dtype=n.dtype) < n
    # Padded rows get their own loss 0 by scaling the mean back to a sum over valid rows.
    per_example = jax.vmap(lambda o, t: loss.value(o[None], t[None]))(outputs, yb)
    return jnp.sum(jnp.where(valid, per_example, 0)), jnp.argmax(outputs, axis=-1)


_batch_stats = jax.jit(_batch_stats_fn, static_argnums=(0, 1))


@functools.lru_cache(maxsize=8)
def _mesh_batch_stats(mesh: Mesh) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """`_batch_stats` for batches split over ``mesh``: outputs replicated on every device."""
    return jax.jit(_batch_stats_fn, static_argnums=(0, 1), out_shardings=replicated(mesh))


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
) -> Report:
    """Evaluate a classifier on ``(x, y)`` in fixed-size batches (one compilation).

    ``loss`` is the data loss (no penalty), averaged over all examples. The last batch is padded
    to ``batch_size`` and the padding ignored, so any ``N`` costs one compile. The model runs in
    inference mode (``train=False``: no dropout, batch norm on its running statistics).

    Args:
        x: ``(N, ...)`` floats, e.g. ``(N, 784)`` or ``(N, 28, 28, 1)``.
        y: integer labels ``(N,)`` or one-hot ``(N, classes)``.
        loss: a `Loss` whose value is a mean over the batch (e.g. `cross_entropy`).
        batch_size: examples per compiled batch. The default, 1024, keeps a CNN's activations
            small (10 000 MNIST digits at once through `nnrs_jax.recipes.cnn` take 3 GB).
        zero_division: value of a precision/recall/F1 whose denominator is 0.
        state: the model state (`FitResult.state`); needed when the model has one.
        mesh: a `jax.sharding.Mesh` with one axis ``"data"`` (`nnrs_jax.parallel.data_mesh`):
            each batch is split over its devices, params and state replicated. The batch size
            is rounded up to a multiple of the device count (the padding is ignored). In a
            multi-process run every process passes the whole ``(x, y)`` and gets the report.

    Returns:
        A `Report`; ``str(report)`` prints the matrix and per-class lines like the seed.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"evaluate: x must be a floating (N, ...) array, got {x.shape} {x.dtype}")
    if state is None:
        if has_state(model):
            raise ValueError(
                f"evaluate: {model.name} keeps state (e.g. batch-norm running statistics); "
                "pass state=result.state"
            )
        state = model.init_state()
    if y.ndim == 2:
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"y must be integer labels of shape ({x.shape[0]},), got {y.shape} {y.dtype}"
        )
    if x.shape[0] == 0:
        raise ValueError("x and y are empty: nothing to evaluate")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    example = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    classes = jax.eval_shape(
        lambda p, s, a: forward(model, p, a, state=s)[0], params, state, example
    )
    classes = classes.shape[-1]
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}), got [{y.min()}, {y.max()}]")
    y = y.astype(np.int32)

    size = min(batch_size, x.shape[0])
    stats, place = _batch_stats, None
    if mesh is not None:
        mesh = check_mesh("evaluate", mesh)
        size = -(-size // mesh.devices.size) * mesh.devices.size
        params, state = replicate((params, state), mesh)
        stats, rows = _mesh_batch_stats(mesh), process_rows(mesh, size)

        def place(a: np.ndarray) -> jax.Array:
            return assemble(a[rows], split(mesh), a.shape)

    total, predictions = 0.0, []
    for start in range(0, x.shape[0], size):
        xb, yb = x[start : start + size], y[start : start + size]
        n = xb.shape[0]
        if n < size:
            xb = np.concatenate([xb, np.zeros((size - n, *x.shape[1:]), x.dtype)])
            yb = np.concatenate([yb, np.zeros(size - n, yb.dtype)])
        if place is not None:
            xb, yb = place(xb), place(yb)
        s, pred = stats(model, loss, params, state, xb, yb, np.asarray(n, np.int32))
        total += float(s)
        predictions.append(np.asarray(pred)[:n])
    matrix = confusion_matrix(y, np.concatenate(predictions), classes)
    return Report.from_confusion(matrix, total / x.shape[0], zero_division)
