"""Trace-time checks of the layer contract: what a layer's ``forward`` and ``backward`` return.

Every `nnrs_jax.Layer` runs its functions through these checks (see ``docs/layers.md``), so a
user layer that breaks the contract is named at once, by the layer itself, instead of failing
in the next layer or training silently. They read only shapes, dtypes and tree structures, so
they cost nothing under ``jit``.

The contract:

* ``forward(params, x, *, state, key, train)`` returns a pair ``(y, new_state)``; ``y`` is an
  array and, when ``state`` is given, ``new_state`` has its tree, shapes and dtypes.
* ``backward(params, x, grad_y, *, state, key, train)`` returns a pair ``(grad_params,
  grad_x)``: ``grad_params`` has exactly the tree of ``params`` (same structure, every leaf the
  same shape and dtype: a per-feature parameter's gradient is summed over the batch) and, when
  ``x`` is an array, ``grad_x`` has the shape and dtype of ``x``. A layer with several
  inputs takes a plain tuple ``x`` (``(x, mask)``, ``(x, h0)``); its ``grad_x`` is a tuple of the
  same structure, with the gradient of each floating entry (same shape and dtype) and ``None``
  for each integer or boolean one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LayerContractError", "check_backward_result", "check_forward_result", "located"]


class LayerContractError(ValueError):
    """A layer's ``forward`` or ``backward`` returned something the layer contract forbids."""


def located(err: LayerContractError, index: int, parent: str) -> LayerContractError:
    """``err`` with the position of the failing layer inside ``parent`` appended."""
    return LayerContractError(f"{err} [layer {index} of {parent}]")


def _describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    return "None" if value is None else type(value).__name__


def _pair(name: str, what: str, names: str, result: Any) -> tuple[Any, Any]:
    if not isinstance(result, tuple) or len(result) != 2:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else _describe(result)
        raise LayerContractError(f"{name}: {what} must return a pair {names}, got {got}")
    return result


def _same_tree(name: str, what: str, ref_name: str, got: Any, ref: Any) -> None:
    """Raise unless ``got`` has the tree structure, leaf shapes and leaf dtypes of ``ref``."""
    got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(got)
    ref_leaves, ref_tree = jax.tree_util.tree_flatten_with_path(ref)
    if got_tree != ref_tree:
        raise LayerContractError(
            f"{name}: {what} must have the tree structure of {ref_name} {ref_tree}, got "
            f"{got_tree if got is not None else 'None'}"
        )
    for (path, g), (_, r) in zip(got_leaves, ref_leaves):
        where = what + jax.tree_util.keystr(path)
        if not (hasattr(g, "shape") and hasattr(g, "dtype")):
            raise LayerContractError(f"{name}: {where} must be an array, got {_describe(g)}")
        r_shape = tuple(getattr(r, "shape", np.shape(r)))
        r_dtype = r.dtype if hasattr(r, "dtype") else np.asarray(r).dtype
        if tuple(g.shape) != r_shape:
            hint = " (sum a per-feature gradient over the batch)" if g.ndim > len(r_shape) else ""
            raise LayerContractError(
                f"{name}: {where} must have the shape of {ref_name}{jax.tree_util.keystr(path)} "
                f"{r_shape}, got {tuple(g.shape)}{hint}"
            )
        if g.dtype != r_dtype:
            raise LayerContractError(
                f"{name}: {where} must have the dtype of {ref_name}{jax.tree_util.keystr(path)} "
                f"{r_dtype}, got {g.dtype}"
            )


def check_forward_result(name: str, state: Any, result: Any) -> tuple[Any, Any]:
    """``result`` as ``(y, new_state)`` after checking it against the contract."""
    y, new_state = _pair(name, "forward", "(y, new_state)", result)
    if not (hasattr(y, "shape") and hasattr(y, "dtype")):
        raise LayerContractError(f"{name}: forward's y must be an array, got {_describe(y)}")
    if state is not None:
        _same_tree(name, "new_state", "state", new_state, state)
    return y, new_state


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _check_input_tuple(name: str, x: tuple, grad_x: Any) -> None:
    """A tuple ``x``: ``grad_x`` a tuple like it, an array per floating entry, else ``None``."""
    if not isinstance(grad_x, tuple) or len(grad_x) != len(x):
        raise LayerContractError(
            f"{name}: grad_x must be a tuple of {len(x)} entries like x, got {_describe(grad_x)}"
        )
    for i, (a, g) in enumerate(zip(x, grad_x)):
        if type(a) is tuple:
            _check_input_tuple(name, a, g)
        elif _is_array(a) and jnp.issubdtype(a.dtype, jnp.floating):
            if not _is_array(g) or tuple(g.shape) != tuple(a.shape) or g.dtype != a.dtype:
                raise LayerContractError(
                    f"{name}: grad_x[{i}] must have the shape and dtype of x[{i}] "
                    f"{tuple(a.shape)} {a.dtype}, got {_describe(g)}"
                )
        elif g is not None:
            raise LayerContractError(
                f"{name}: grad_x[{i}] must be None (x[{i}] is not floating), got {_describe(g)}"
            )


def check_backward_result(name: str, params: Any, x: Any, result: Any) -> tuple[Any, Any]:
    """``result`` as ``(grad_params, grad_x)`` after checking it against the contract."""
    grad_params, grad_x = _pair(name, "backward", "(grad_params, grad_x)", result)
    _same_tree(name, "grad_params", "params", grad_params, params)
    if type(x) is tuple:  # several inputs; a NamedTuple (dense's Pretransposed) is one input
        _check_input_tuple(name, x, grad_x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        if not (hasattr(grad_x, "shape") and hasattr(grad_x, "dtype")):
            raise LayerContractError(
                f"{name}: grad_x must be an array of the shape of x {tuple(x.shape)}, "
                f"got {_describe(grad_x)}"
            )
        if tuple(grad_x.shape) != tuple(x.shape):
            raise LayerContractError(
                f"{name}: grad_x must have the shape of x {tuple(x.shape)}, "
                f"got {tuple(grad_x.shape)}"
            )
        if grad_x.dtype != x.dtype and jnp.issubdtype(x.dtype, jnp.floating):
            raise LayerContractError(
                f"{name}: grad_x must have the dtype of x {x.dtype}, got {grad_x.dtype}"
            )
    return grad_params, grad_x
