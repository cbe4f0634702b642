"""The `Optimizer` type, `apply_updates`, `bind`, and the checks and helpers every rule shares.

An optimizer is a pair of pure functions over pytrees: ``init(params) -> state`` and
``update(grads, state, params=None) -> (updates, new_state)``. Updates already carry the sign and
the learning rate, so a training step is ``params = apply_updates(params, updates)``. The small
transformations (`nnrs_jax.optim.scaling`: the learning rate, momentum, Adam's scaling;
`nnrs_jax.optim.clipping`; `nnrs_jax.optim.weight_decay`) are `Optimizer` values too, so `chain`
(`nnrs_jax.optim.combine`) composes them into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_float
from nnrs_jax.schedules import Schedule

__all__ = ["Optimizer", "apply_updates", "bind"]

Params = Any  # a pytree of floating arrays
Updates = Any  # a pytree with the structure, shapes and dtypes of the params
OptState = Any  # a NamedTuple of arrays and pytrees (a tuple of them for `chain`)

_BRIEF = 160  # characters of a tree structure shown in an error message


class Optimizer(NamedTuple):
    """An optimizer: two pure functions, safe under ``jit``, ``vmap``, ``grad`` and ``lax.scan``.

    Attributes:
        init: ``init(params) -> state``. The state is a NamedTuple of arrays (a tuple of the
            children's states for `chain`); counters are int32 scalars named ``timestep`` (0
            before the first update) and buffers (``velocity``, ``scaling_factor``, …) are fresh
            arrays with the structure, shapes and dtypes of ``params``.
        update: ``update(grads, state, params=None) -> (updates, new_state)``. ``grads`` must
            have the structure, shapes and dtypes of the params given to ``init``; ``updates``
            has them too. A full optimizer's updates already include ``-learning_rate``; a
            transformation's are the transformed gradient. ``params`` (the values the gradient
            was taken at) is read by `add_decayed_weights` and `ema` and checked by the others.

    The factories of this package fill both fields with `bind` objects, so that two optimizers
    built with equal settings compare (and hash) equal.
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

    Examples:
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


def brief(treedef: Any) -> str:
    """A tree structure as text, cut to a length that keeps an error message readable."""
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
            f"expected {brief(ref_def)}, got {brief(tree_def)}"
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


def check_gradient_tree(
    name: str, grads: Updates, buffer: Params | None, params: Params | None
) -> None:
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


def zeros_init(name: str, state_type: type, params: Params) -> NamedTuple:
    """The ``init`` of a transformation: ``state_type`` with every field at its starting value.

    A field named ``timestep`` starts at the int32 scalar 0 (`zero_timestep`); every other field
    is a fresh zero buffer with the tree, shapes and dtypes of ``params`` (`zeros_like_params`).
    A state without fields (e.g. `clip`'s) only checks that the params are floating.
    """
    check_floating(name, params)
    return state_type(
        **{
            field: zero_timestep() if field == "timestep" else jax.tree.map(jnp.zeros_like, params)
            for field in state_type._fields
        }
    )


def transformation(
    name: str, state_type: type, update: Callable[..., Any], *hyper: Any
) -> Optimizer:
    """The `Optimizer` ``(bind(zeros_init, name, state_type), bind(update, *hyper))``.

    ``update(*hyper, grads, state, params=None)`` is a module-level function, so that equal
    hyperparameters give equal optimizers (see `bind`).
    """
    return Optimizer(bind(zeros_init, name, state_type), bind(update, *hyper))


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
    """A schedule is passed through; a number must be finite and ``> 0`` (`check_float`).

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
    try:
        return check_float(name, "learning_rate", learning_rate, low=0.0, low_open=True)
    except TypeError:
        raise TypeError(
            f"{name}: learning_rate must be a positive float or a schedule t -> lr, "
            f"got {learning_rate!r} ({type(learning_rate).__name__})"
        ) from None


def check_positive(name: str, arg: str, value: Any) -> float:
    """A finite float ``> 0`` (``eps``, a clipping threshold)."""
    return check_float(name, arg, value, low=0.0, low_open=True)


def _identity_key(value: Any) -> Any:
    """What `bind` compares: the value itself, or its identity when it cannot be hashed.

    Tuples (NamedTuples, e.g. the children of a `chain`) are compared element by element.
    Arrays, tracers, dicts and lists cannot be hashed; they compare equal only to themselves.
    """
    if isinstance(value, tuple):
        return (type(value), tuple(_identity_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return (_Identity, id(value))
    return value


class _Identity:
    """Marks an identity key in `_identity_key`, so that it never equals a hashable value."""


class bind:
    """``bind(fn, *hyper)(*args) == fn(*hyper, *args)``, comparing equal by ``fn`` and ``hyper``.

    A closure made by a factory is a new object at every call, so ``adam(0.1) != adam(0.1)`` and
    code compiled or cached for one is never reused for the other. The factories here bind their
    hyperparameters to module-level functions instead: two `bind` objects are equal (and hash
    equal) when their functions are the same and their hyperparameters are equal. Hyperparameters
    that cannot be hashed (JAX arrays and tracers, e.g. a learning rate traced under ``vmap``;
    dicts) compare by identity, so they never make two different settings look equal.

    Examples:
        >>> from nnrs_jax.optim import adam
        >>> adam(0.1) == adam(0.1), adam(0.1) == adam(0.2)
        (True, False)
        >>> hash(adam(0.1)) == hash(adam(0.1))
        True
    """

    __slots__ = ("__weakref__", "_key", "fn", "hyper")

    def __init__(self, fn: Callable[..., Any], *hyper: Any) -> None:
        self.fn = fn
        self.hyper = hyper
        self._key = (fn, _identity_key(hyper))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*self.hyper, *args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, bind) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        hyper = ", ".join(repr(h) for h in self.hyper)
        return f"bind({self.fn.__qualname__}{', ' if hyper else ''}{hyper})"


def flatten_state(
    name: str, optimizer: Optimizer, state_type: type, layout: tuple[type, ...]
) -> Optimizer:
    """``optimizer`` (a `chain`) with its tuple of child states merged into one NamedTuple.

    ``layout`` lists the chain's child state types in order; the fields of ``state_type`` are
    the union of theirs, and a field that several children share (each keeps a ``timestep``)
    holds one value, handed to each of them. So `adam` is a chain and its state is still
    ``AdamState(timestep, velocity, scaling_factor)``, the same tree as before it was one.
    The update first checks ``grads`` against ``params`` and the state's buffers, so that an
    error names the optimizer (``name``) the user called rather than one of its pieces.
    """
    return Optimizer(
        bind(_flat_init, optimizer, state_type),
        bind(_flat_update, name, optimizer, state_type, layout),
    )


def _merge(state_type: type, states: tuple[NamedTuple, ...]) -> NamedTuple:
    fields: dict[str, Any] = {}
    for state in states:
        fields.update(state._asdict())
    return state_type(**fields)


def _flat_init(optimizer: Optimizer, state_type: type, params: Params) -> NamedTuple:
    return _merge(state_type, optimizer.init(params))


def _flat_update(
    name: str,
    optimizer: Optimizer,
    state_type: type,
    layout: tuple[type, ...],
    grads: Updates,
    state: NamedTuple,
    params: Params | None = None,
) -> tuple[Updates, NamedTuple]:
    if not isinstance(state, state_type):
        raise TypeError(
            f"{name}: state must be of type {state_type.__name__}, got {type(state).__name__}"
        )
    buffers = [getattr(state, field) for field in state._fields if field != "timestep"]
    check_gradient_tree(name, grads, buffers[0] if buffers else None, params)
    children = tuple(
        child(**{field: getattr(state, field) for field in child._fields}) for child in layout
    )
    updates, children = optimizer.update(grads, children, params)
    return updates, _merge(state_type, children)
