"""One validator for the data given to `evaluate` and `fit`: shapes, dtypes, values and the task.

Everything is checked on the host with NumPy before any array is placed on a device or compiled,
so a message reports the array actually given (float64 labels are reported as float64, not as
the float32 JAX would have made of them) and no check costs a device round trip. The finiteness
check is two passes (``min`` and ``max``, which propagate ``NaN``), about 10 ms for MNIST's
``60000 × 784`` float32, with no temporary copy; the offending row is searched for only when
there is one.

The task is decided in one place, `task`: classification when ``y`` has an integer dtype or the
loss is a classification loss (``Loss.classification``), regression otherwise.

Examples:
    >>> import jax, numpy as np, nnrs_jax as nj
    >>> from nnrs_jax.data_checks import check_data
    >>> model = nj.serial(nj.dense(4, 1))
    >>> x, y = np.zeros((8, 4), np.float32), np.arange(8, dtype=np.float32)
    >>> params, state = model.init(jax.random.key(0)), model.init_state()
    >>> data = check_data("fit", model, params, state, x, y, nj.mse)
    >>> data.task, data.y.shape
    ('regression', (8, 1))
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.layers.base import Layer, Params, State, forward
from nnrs_jax.layers.contract import LayerContractError
from nnrs_jax.losses import Loss

__all__ = ["Data", "Task", "check_data", "task"]

Task = Literal["classification", "regression"]


class Data(NamedTuple):
    """Data that passed `check_data`, as NumPy arrays on the host.

    Attributes:
        x: ``(N, ...)`` floats, the array given (its dtype kept).
        y: classification: integer labels ``(N,)`` as int32 in ``[0, outputs)``, or targets
            ``(N, outputs)`` (one-hot or soft) in the model's output dtype; regression: targets
            ``(N, outputs)`` in the model's output dtype (``(N,)`` given for a model with one
            output becomes ``(N, 1)``).
        task: ``"classification"`` or ``"regression"`` (see `task`).
        outputs: the model's output width: its output has shape ``(batch, outputs)``.
    """

    x: np.ndarray
    y: np.ndarray
    task: Task
    outputs: int


def task(loss: Loss, y: Any) -> Task:
    """Which task ``(loss, y)`` describes: the one rule `evaluate` and `fit` share.

    * ``"classification"`` when ``y`` has an integer dtype (labels ``(N,)`` or one-hot
      ``(N, classes)``), or when ``loss.classification`` is set (`cross_entropy`,
      `softmax_mse`), whatever the targets' dtype;
    * ``"regression"`` otherwise: float targets with a regression loss such as `mse`.

    Only ``y``'s dtype is read (no copy, no device transfer).
    """
    dtype = np.dtype(y.dtype) if hasattr(y, "dtype") else np.asarray(y).dtype
    if np.issubdtype(dtype, np.integer) or loss.classification:
        return "classification"
    return "regression"


def check_data(
    caller: str, model: Layer, params: Params, state: State, x: Any, y: Any, loss: Loss
) -> Data:
    """Check ``(x, y)`` for ``model`` and ``loss``; clear errors before anything is compiled.

    Rules, in the order they are checked:

    * ``loss`` is a `Loss`;
    * ``x`` is an ``(N, ...)`` array (a batch axis and at least one feature axis) with a
      floating dtype (integer token ids for a model that starts with `nnrs_jax.embedding`);
      ``y`` is ``(N,)`` or ``(N, k)``; both have the same ``N > 0``;
    * the model accepts rows of ``x``: its output shape is found with `jax.eval_shape` on a
      ``(1, *x.shape[1:])`` example (nothing runs), and must be ``(1, outputs)``;
    * ``x`` holds no ``NaN`` or ``inf``;
    * classification (`task`): labels ``(N,)`` have an integer dtype and lie in
      ``[0, outputs)``; targets ``(N, outputs)`` are finite numbers;
    * regression: targets are finite floats ``(N, outputs)``, or ``(N,)`` when the model has
      exactly one output.

    Args:
        caller: the function the user called, named in every message (``"evaluate"``,
            ``"fit"``).
        model, params, state: the model, its parameters and its state (``model.init_state()``
            for a model without one).
        x, y: the data, any array-likes (NumPy arrays are not copied).
        loss: the data loss, which decides the task together with ``y``'s dtype.

    Returns:
        A `Data` of NumPy arrays, ``y`` ready for the loss.

    Raises:
        TypeError: a wrong type or dtype (``x`` of integers for a model that does not start with
            `nnrs_jax.embedding`, float labels for a classification loss, a ``loss`` that is not
            a `Loss`).
        ValueError: a wrong shape or value (``x`` that does not fit the model, labels out of
            range, ``NaN``, different lengths, no examples).
    """
    if not isinstance(loss, Loss):
        raise TypeError(
            f"{caller}: loss must be a Loss such as nj.cross_entropy or nj.mse, "
            f"got {type(loss).__name__}"
        )
    x, y = _host(caller, "x", x), _host(caller, "y", y)
    if x.ndim < 2:
        raise ValueError(
            f"{caller}: x must be an (N, ...) array with a batch axis, e.g. (N, 784) or "
            f"(N, 28, 28, 1), got {x.shape}"
        )
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(
            f"{caller}: x must have a floating dtype (or integer token ids for a model that "
            f"starts with nj.embedding), got {x.dtype}"
        )
    if y.ndim not in (1, 2):
        raise ValueError(f"{caller}: y must be labels (N,) or targets (N, classes), got {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{caller}: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{caller}: x and y are empty: need at least one example")
    out = _output_shape(caller, model, params, state, x)
    _check_finite(caller, "x", x)
    outputs = out.shape[-1]
    if task(loss, y) == "classification":
        return Data(x, _classification_targets(caller, y, loss, out), "classification", outputs)
    return Data(x, _regression_targets(caller, y, out), "regression", outputs)


def _host(caller: str, arg: str, value: Any) -> np.ndarray:
    """``value`` as a NumPy array (a device array is copied to the host once)."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{caller}: {arg} must be an array, got {type(value).__name__} ({error})"
        ) from error


@functools.lru_cache(maxsize=64)
def _traced_output(
    model: Layer, treedef: Any, structs: tuple[jax.ShapeDtypeStruct, ...], example: Any
) -> jax.ShapeDtypeStruct:
    """The output of ``model`` on ``example``, traced once per model and shapes."""
    params, state = jax.tree.unflatten(treedef, structs)
    return jax.eval_shape(lambda p, s, a: forward(model, p, a, state=s)[0], params, state, example)


def _output_shape(
    caller: str, model: Layer, params: Params, state: State, x: np.ndarray
) -> jax.ShapeDtypeStruct:
    """The model's output for one row of ``x``, traced only; a shape error gets a hint.

    A dtype clash (float64 ``x`` into float32 parameters under strict promotion) is a
    `TypeError`; any other `ValueError` while tracing is read as ``x`` not fitting the model.
    """
    example = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    leaves, treedef = jax.tree.flatten((params, state))
    structs = tuple(jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in leaves)
    try:
        out = _traced_output(model, treedef, structs, example)
    except LayerContractError:
        raise
    except TypeError as error:
        if jnp.issubdtype(x.dtype, jnp.floating):
            raise
        raise TypeError(
            f"{caller}: x must have a floating dtype, got {x.dtype} ({error}); only a model "
            "that starts with nj.embedding takes integer token ids; cast images to float32, "
            "e.g. x / 255"
        ) from error
    except jax.dtypes.TypePromotionError as error:
        floats = {
            str(leaf.dtype)
            for leaf in jax.tree.leaves(params)
            if jnp.issubdtype(leaf.dtype, jnp.floating)
        }
        want = f"the parameters' dtype {', '.join(sorted(floats))}" if floats else "float32"
        raise TypeError(
            f"{caller}: x of dtype {x.dtype} does not fit the model ({error}); cast x to {want}"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"{caller}: x of shape {x.shape} does not fit the model ({error}); "
            f"{_layout_hint(x.shape)}"
        ) from error
    if len(out.shape) != 2:
        raise ValueError(
            f"{caller}: the model must give outputs of shape (batch, outputs), got "
            f"{out.shape} for x rows of shape {x.shape[1:]}; end it with nj.flatten() and a "
            "dense layer"
        )
    return out


def _layout_hint(shape: tuple[int, ...]) -> str:
    """How dense and conv models want their inputs laid out, for ``x`` of ``shape``."""
    rest = shape[1:]
    flat = math.prod(rest)
    if len(rest) == 1:
        side = math.isqrt(flat)
        image = f"(N, {side}, {side}, 1)" if side * side == flat else "(N, height, width, 1)"
        return (
            f"a dense model takes rows (N, features) as wide as its first layer; a conv model "
            f"takes NHWC images {image}: reshape, or load with flatten=False"
        )
    conv = f"(N, {rest[0]}, {rest[1]}, 1)" if len(rest) == 2 else "(N, height, width, channels)"
    return (
        f"a dense model takes flat rows: reshape to (N, {flat}) or load with flatten=True; "
        f"a conv model takes NHWC {conv}"
    )


def _check_finite(caller: str, arg: str, a: np.ndarray) -> None:
    """Raise, naming the first bad row, when ``a`` holds ``NaN`` or ``±inf``."""
    # min and max propagate NaN and see ±inf: two fast passes and no boolean copy of `a`.
    if np.isfinite(a.min()) and np.isfinite(a.max()):
        return
    rows = np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
    raise ValueError(f"{caller}: {arg} contains NaN or inf (first at row {int(np.argmin(rows))})")


def _classification_targets(
    caller: str, y: np.ndarray, loss: Loss, out: jax.ShapeDtypeStruct
) -> np.ndarray:
    classes = out.shape[-1]
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(
                f"{caller}: labels y must have an integer dtype, got {y.dtype} ({loss.name} is "
                f"a classification loss: pass integer labels (N,) or targets (N, {classes}))"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"{caller}: labels y must lie in [0, {classes}) for a model with {classes} "
                f"outputs, got values in [{low}, {high}]"
            )
        return y.astype(np.int32, copy=False)
    if y.shape[1] != classes:
        raise ValueError(f"{caller}: targets y must have shape (N, {classes}), got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or jnp.issubdtype(y.dtype, jnp.floating)):
        raise TypeError(f"{caller}: targets y must have a floating or integer dtype, got {y.dtype}")
    _check_finite(caller, "y", y)
    return y.astype(out.dtype, copy=False)


def _regression_targets(caller: str, y: np.ndarray, out: jax.ShapeDtypeStruct) -> np.ndarray:
    outputs = out.shape[-1]
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"{caller}: targets y must have a floating dtype, got {y.dtype}")
    if y.ndim == 1:
        if outputs != 1:
            raise ValueError(
                f"{caller}: targets y of shape {y.shape} need a model with one output, this one "
                f"has {outputs}: pass targets (N, {outputs}), or integer labels (N,) for "
                "classification"
            )
        y = y.reshape(-1, 1)
    elif y.shape[1] != outputs:
        raise ValueError(f"{caller}: targets y must have shape (N, {outputs}), got {y.shape}")
    _check_finite(caller, "y", y)
    return y.astype(out.dtype, copy=False)
