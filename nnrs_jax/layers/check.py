"""`check_layer`: one layer's hand-written backward against ``jax.vjp`` of its forward."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax._validate import check_bool
from nnrs_jax.layers.base import Params, PRNGKey, State, check_model

__all__ = ["LayerCheck", "check_layer", "default_rtol", "relative_error"]

# A correct float64 backward agrees with autodiff to rounding (~1e-15); float32 to ~1e-7 for
# most layers, 1e-6 after long reductions (a convolution); half precision to a few 1e-3.
_RTOL = {"float64": 1e-10, "float32": 1e-5, "bfloat16": 3e-2, "float16": 1e-2}
# A difference of _ROUNDING·ε·G (G the largest reference gradient) is rounding, not an error:
# a gradient that is zero in theory (a bias right before batch_norm in training) is only noise
# of about ε·G on both sides.
_ROUNDING = 16


def relative_error(got: Any, ref: Any, floor: float = 0.0) -> float:
    """Norm-wise relative error ``max|got − ref| / max(max|ref|, floor)`` of two arrays.

    Computed in float64; the denominator is at least the smallest positive float64, so an
    all-zero reference with ``floor = 0`` measures the absolute error. The referee of
    `check_layer` and of the test suite.
    """
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref), initial=0.0)), floor, float(np.finfo(np.float64).tiny))
    return float(np.max(np.abs(got - ref), initial=0.0)) / scale


def default_rtol(*trees: Any) -> float:
    """The tolerance for the least precise floating dtype among the leaves of ``trees``."""
    names = {
        jnp.dtype(leaf.dtype).name
        for leaf in jax.tree.leaves(trees)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    }
    return max((_RTOL.get(name, 1e-2) for name in names), default=_RTOL["float32"])


class LayerCheck(NamedTuple):
    """The result of `check_layer`; ``print`` it for a table.

    Attributes:
        name: the layer's name.
        ok: every error is at most ``rtol``.
        max_error: the largest error.
        rtol: the tolerance the errors were held to.
        errors: the error of each gradient: ``"grad_x"`` and one entry per parameter leaf,
            keyed by its path (``"params.w"``, ``"params[0].b"``).
    """

    name: str
    ok: bool
    max_error: float
    rtol: float
    errors: dict[str, float]

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        lines = [
            f"check_layer({self.name}): {verdict}, max relative error {self.max_error:.2e} "
            f"(rtol {self.rtol:.0e})"
        ]
        width = max((len(path) for path in self.errors), default=0)
        for path, err in self.errors.items():
            mark = "" if err <= self.rtol else "  <-- exceeds rtol"
            lines.append(f"  {path:<{width}}  {err:.2e}{mark}")
        return "\n".join(lines)


def _floating(leaf: Any) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.floating)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _compare(
    layer: Any,
    train: bool,
    params: Params,
    x: Any,
    state: State,
    dy_key: PRNGKey,
    run_key: PRNGKey,
) -> tuple[Any, Any]:
    """The hand-written ``(grad_params, grad_x)`` and ``jax.vjp``'s, for one cotangent.

    ``x`` is an array or a tuple of them; ``jax.vjp`` differentiates its floating leaves only,
    and the reference ``grad_x`` is the list of those leaves' gradients. Compiled once per
    equal layer and input shapes (the layer is a static argument).
    """
    leaves, tree = jax.tree.flatten(x)
    which = [i for i, leaf in enumerate(leaves) if _floating(leaf)]

    def fn(p: Params, floating: list[jax.Array]) -> jax.Array:
        full = list(leaves)
        for i, leaf in zip(which, floating):
            full[i] = leaf
        a = jax.tree.unflatten(tree, full)
        return layer.forward(p, a, state=state, key=run_key, train=train)[0]

    y, pullback = jax.vjp(fn, params, [leaves[i] for i in which])
    dy = jax.random.normal(dy_key, y.shape, y.dtype)
    ref = pullback(dy)
    got = layer.backward(params, x, dy, state=state, key=run_key, train=train)
    return got, ref


def check_layer(
    layer: Any,
    x: jax.Array,
    *,
    params: Params | None = None,
    key: PRNGKey | None = None,
    state: State = None,
    train: bool = False,
    rtol: float | None = None,
) -> LayerCheck:
    """Compare ``layer.backward`` with ``jax.vjp`` of ``layer.forward`` at ``x``.

    With a random cotangent ``dy`` (standard normal, ``y``'s shape and dtype), the hand-written
    ``(grad_params, grad_x) = backward(params, x, dy)`` is compared leaf by leaf with the
    pullback of ``y = forward(params, x)``::

        error = max|g − g_ref| / max(max|g_ref|, 16·ε·G / rtol)

    (`relative_error`), with ``G`` the largest entry of any reference gradient and ``ε`` the
    dtype's machine epsilon: a plain relative error, except that a difference at the rounding
    level of the whole layer (``16·ε·G``) counts as exactly ``rtol``, so a gradient that is
    zero in theory (a bias right before `batch_norm` in training) passes. ``grad_x`` is
    compared when ``x`` is floating; for a layer with several inputs (a tuple ``x``, e.g.
    ``(x, mask)``), each floating entry's gradient is. The layer's contract is checked on the
    way (`nnrs_jax.layers.contract`).

    Args:
        layer: the `nnrs_jax.Layer` to check.
        x: an input batch, or a tuple of inputs; float64 (with ``jax_enable_x64``) makes the
            check sharpest.
        params: the parameters; ``layer.init`` of a key split from ``key`` by default.
        key: PRNG key for the default params, the cotangent and the layer's own randomness
            (dropout); ``jax.random.key(0)`` by default.
        state: the layer's state; ``layer.init_state()`` by default.
        train: the training switch given to ``forward`` and ``backward``.
        rtol: the tolerance; by default from the least precise floating dtype among ``x`` and
            ``params``: 1e-10 for float64, 1e-5 for float32, 1e-2 for float16 (3e-2 bfloat16).

    Returns:
        A `LayerCheck`: ``.ok``, ``.max_error``, ``.rtol`` and ``.errors`` per gradient.

    Raises:
        TypeError: ``layer`` is not a `Layer`, ``x`` is not an array or a tuple of arrays,
            ``train`` not a bool.
        nnrs_jax.layers.contract.LayerContractError: the layer breaks the layer contract.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> report = nj.check_layer(nj.dense(3, 2), jnp.ones((4, 3)))
        >>> report.ok, sorted(report.errors)
        (True, ['grad_x', 'params.b', 'params.w'])
    """
    layer = check_model("check_layer", layer, "layer")
    leaves = jax.tree.leaves(x) if type(x) is tuple else [x]
    if not leaves or not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in leaves):
        raise TypeError(
            f"check_layer: x must be an array or a tuple of arrays, got {type(x).__name__}"
        )
    train = check_bool("check_layer", "train", train)
    key = jax.random.key(0) if key is None else key
    init_key, dy_key, run_key = jax.random.split(key, 3)
    if params is None:
        params = layer.init(init_key)
    if state is None:
        state = layer.init_state()
    x = jax.tree.map(jnp.asarray, x)
    if rtol is None:
        rtol = default_rtol(params, x)
    elif not (isinstance(rtol, (int, float)) and rtol > 0):
        raise ValueError(f"check_layer: rtol must be a positive number, got {rtol!r}")
    (grad_params, grad_x), (ref_params, ref_x) = _compare(
        layer, train, params, x, state, dy_key, run_key
    )
    # grad_x's entries at x's floating leaves (None marks the others in a tuple grad_x).
    x_paths, _ = jax.tree_util.tree_flatten_with_path(x)
    x_leaves = [leaf for _, leaf in x_paths]
    got_x = jax.tree.leaves(grad_x, is_leaf=lambda v: v is None)
    names = ["grad_x" + jax.tree_util.keystr(path) for path, _ in x_paths]
    floating = [i for i, leaf in enumerate(x_leaves) if _floating(leaf)]
    pairs = [(names[i], got_x[i], ref) for i, ref in zip(floating, ref_x)]
    got_leaves = jax.tree_util.tree_flatten_with_path(grad_params)[0]
    for (path, got), ref in zip(got_leaves, jax.tree.leaves(ref_params)):
        pairs.append(("params" + jax.tree_util.keystr(path), got, ref))
    largest = max((float(jnp.max(jnp.abs(ref))) for _, _, ref in pairs if ref.size), default=0.0)
    eps = max((float(jnp.finfo(ref.dtype).eps) for _, _, ref in pairs), default=0.0)
    floor = _ROUNDING * eps * largest / rtol
    errors = {path: relative_error(got, ref, floor) for path, got, ref in pairs}
    max_error = max(errors.values(), default=0.0)
    ok = bool(np.isfinite(max_error) and max_error <= rtol)
    return LayerCheck(layer.name, ok, max_error, float(rtol), errors)
