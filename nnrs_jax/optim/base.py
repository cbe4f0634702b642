"""The `Optimizer` type, `apply_updates`, and the checks and helpers every update rule shares.

An optimizer is a pair of pure functions over pytrees: ``init(params) -> state`` and
``update(grads, state, params=None) -> (updates, new_state)``. Updates already carry the sign and
the learning rate, so a training step is ``params = apply_updates(params, updates)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax.schedules import Schedule

__all__ = ["Optimizer", "apply_updates"]

Params = Any  # a pytree of floating arrays
Updates = Any  # a pytree with the structure, shapes and dtypes of the params
OptState = Any  # a NamedTuple of arrays and pytrees

_BRIEF = 160  # characters of a tree structure shown in an error message


class Optimizer(NamedTuple):
    """An optimizer: two pure functions, safe under ``jit``, ``vmap``, ``grad`` and ``lax.scan``.

    Attributes:
        init: ``init(params) -> state``. The state is a NamedTuple whose ``timestep`` is an int32
            scalar (0 before the first update) and whose buffers (``velocity``,
            ``scaling_factor``) are fresh zero arrays with the structure, shapes and dtypes of
            ``params``.
        update: ``update(grads, state, params=None) -> (updates, new_state)``. ``grads`` must
            have the structure, shapes and dtypes of the params given to ``init``; ``updates``
            has them too and already includes ``-learning_rate``. ``params`` is only checked
            against ``grads``: none of the rules here reads it.
    """

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return ``params + updates`` leaf by leaf, each result in its param leaf's dtype.

    The sum is taken in the wider of the two dtypes and rounded once to the param dtype, so
    float32 params with float64 updates (or the reverse) work under strict dtype promotion.

    Args:
        params: a pytree of arrays.
        updates: a pytree with the structure and leaf shapes of ``params``.

    Returns:
        The new params, same structure, shapes and dtypes as ``params``.

    Raises:
        TypeError: if the two trees differ in structure.
        ValueError: if a leaf's shape differs; the message names the leaf.

    Example:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.optim import apply_updates
        >>> apply_updates({"w": jnp.ones(2, jnp.float32)}, {"w": jnp.array([0.5, -1.0])})["w"]
        Array([1.5, 0. ], dtype=float32)
    """
    check_tree("apply_updates", updates, params, arg="updates", reference="params", dtypes=False)

    def add(p: jax.Array, u: jax.Array) -> jax.Array:
        p, u = jnp.asarray(p), jnp.asarray(u)
        wide = p.dtype if p.dtype.itemsize >= u.dtype.itemsize else u.dtype
        return (p.astype(wide) + u.astype(wide)).astype(p.dtype)

    return jax.tree.map(add, params, updates)


def _brief(treedef: Any) -> str:
    text = str(treedef)
    return text if len(text) <= _BRIEF else text[: _BRIEF - 1] + "…"


def check_tree(
    name: str, tree: Any, ref: Any, *, arg: str, reference: str, dtypes: bool = True
) -> None:
    """Raise unless ``tree`` has the structure, leaf shapes (and dtypes) of ``ref``.

    Runs on structures, shapes and dtypes only, so it costs nothing under ``jit``.

    Raises:
        TypeError: on a structure (or, with ``dtypes``, a leaf dtype) mismatch.
        ValueError: on a leaf shape mismatch; the message names the leaf path.
    """
    tree_def, ref_def = jax.tree.structure(tree), jax.tree.structure(ref)
    if tree_def != ref_def:
        raise TypeError(
            f"{name}: the {arg} tree does not match the {reference} tree: "
            f"expected {_brief(ref_def)}, got {_brief(tree_def)}"
        )
    with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    for (path, leaf), ref_leaf in zip(with_paths, jax.tree.leaves(ref), strict=True):
        where = f"{arg}{jax.tree_util.keystr(path)}"
        shape, ref_shape = tuple(jnp.shape(leaf)), tuple(jnp.shape(ref_leaf))
        if shape != ref_shape:
            raise ValueError(
                f"{name}: {where} has shape {shape}, expected {ref_shape} as in {reference}"
            )
        if dtypes and jnp.result_type(leaf) != jnp.result_type(ref_leaf):
            raise TypeError(
                f"{name}: {where} has dtype {jnp.result_type(leaf)}, expected "
                f"{jnp.result_type(ref_leaf)} as in {reference}"
            )


def check_grads(name: str, grads: Updates, buffer: Params | None, params: Params | None) -> None:
    """Check ``grads`` against a state buffer (structure, shapes, dtypes) and ``params``."""
    if buffer is not None:
        check_tree(name, grads, buffer, arg="grads", reference="the optimizer state")
    if params is not None:
        check_tree(name, grads, params, arg="grads", reference="params", dtypes=False)


def check_floating(name: str, params: Params) -> None:
    """Raise unless every leaf of ``params`` has a floating dtype; the message names the leaf."""
    with_paths, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in with_paths:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{name}: params{jax.tree_util.keystr(path)} must have a floating dtype, "
                f"got {jnp.result_type(leaf)}"
            )


def zeros_like_params(name: str, params: Params) -> Params:
    """Fresh zero buffers shaped like ``params``; they never alias the params' buffers."""
    check_floating(name, params)
    return jax.tree.map(jnp.zeros_like, params)


def zero_timestep() -> jax.Array:
    """The step count before the first update: an int32 scalar 0."""
    return jnp.zeros((), jnp.int32)


def map_leaves(rule: Callable[..., tuple[jax.Array, ...]], n_out: int, *trees: Any) -> tuple:
    """Apply a per-leaf ``rule`` returning ``n_out`` arrays; return ``n_out`` trees.

    The multi-output form of ``jax.tree.map``: one trace of the rule per leaf, so each rule is a
    handful of element-wise ops that XLA fuses, whatever the number of outputs.
    """
    leaves, treedef = jax.tree.flatten(trees[0])
    others = [treedef.flatten_up_to(tree) for tree in trees[1:]]
    results = [rule(*args) for args in zip(leaves, *others, strict=True)]
    return tuple(treedef.unflatten([r[i] for r in results]) for i in range(n_out))


def learning_rate_at(
    name: str, learning_rate: float | Schedule, timestep: jax.Array
) -> jax.Array | float:
    """The learning rate for this step: the float itself, or the schedule evaluated in-graph.

    Evaluating the schedule on the timestep array keeps the value out of the compiled code, so a
    learning rate that changes from step to step never triggers a recompilation.
    """
    if not callable(learning_rate):
        return learning_rate
    value = learning_rate(timestep)
    if jnp.shape(value) != ():
        raise ValueError(
            f"{name}: the learning_rate schedule must return a scalar, got shape {jnp.shape(value)}"
        )
    return value


def in_dtype(value: jax.Array | float, dtype: Any) -> jax.Array:
    """``value`` as an array of the leaf's dtype, so strict promotion never sees a mix."""
    return jnp.asarray(value).astype(dtype)


def bias_correction(beta: float, timestep: jax.Array, dtype: Any) -> jax.Array:
    """``1 - beta**t`` in ``dtype``, to within a few ulps even for small ``t``.

    Written as ``-expm1(t·log(beta))`` with ``log(beta)`` taken in double precision: in float32,
    ``1 - 0.999**t`` computed directly loses about four of its seven digits to cancellation at
    ``t = 1``. ``beta = 0`` gives 1 for every ``t >= 1``.
    """
    log_beta = math.log(beta) if beta > 0 else -math.inf
    return -jnp.expm1(timestep.astype(dtype) * log_beta)


def check_learning_rate(name: str, learning_rate: Any) -> float | jax.Array | Schedule:
    """A schedule is passed through; a number must be finite and positive.

    A scalar floating JAX array is accepted too, so that a learning rate can be traced: e.g.
    ``jax.vmap(lambda lr: nadam(lr).update(...))`` trains several learning rates at once. Its
    value is checked when it is concrete.
    """
    if callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, jax.Array):
        if learning_rate.shape != () or not jnp.issubdtype(learning_rate.dtype, jnp.floating):
            raise TypeError(
                f"{name}: an array learning_rate must be a floating scalar, got "
                f"{learning_rate.shape} {learning_rate.dtype}"
            )
        if isinstance(learning_rate, jax.core.Tracer):
            return learning_rate
        learning_rate = float(learning_rate)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(
            f"{name}: learning_rate must be a positive float or a schedule t -> lr, "
            f"got {type(learning_rate).__name__}"
        )
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(
            f"{name}: learning_rate must be a finite number > 0, got {learning_rate!r}"
        )
    return float(learning_rate)


def _real(name: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: {arg} must be a float, got {type(value).__name__}")
    return float(value)


def check_decay(name: str, arg: str, value: Any) -> float:
    """A momentum or decay coefficient: ``0 <= value < 1``."""
    value = _real(name, arg, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: {arg} must satisfy 0 <= {arg} < 1, got {value!r}")
    return value


def check_eps(name: str, value: Any) -> float:
    """The stabilising constant: finite and ``> 0``."""
    value = _real(name, "eps", value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: eps must be a finite number > 0, got {value!r}")
    return value
