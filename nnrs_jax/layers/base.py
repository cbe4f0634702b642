"""The `Layer` contract: a NamedTuple of pure functions with a hand-written backward.

Two kinds of layer share one type (see ``docs/design.md``):

* a **plain** layer (``forward is None``): deterministic and stateless, ``apply(params, x)`` and
  ``backward(params, x, grad_y)``, as in stax. `dense`, the activations and any user-written
  ``Layer(init, apply, backward)`` are plain.
* a **context** layer (``forward`` given) takes, by keyword, its non-trainable ``state``, a PRNG
  ``key`` and the ``train`` switch: ``forward(params, x, *, state, key, train) -> (y,
  new_state)`` and ``backward(params, x, grad_y, *, state, key, train)``. `dropout`,
  `batch_norm`, `serial` and `residual` are context layers.

`forward` and `backward` (the functions of this module) call either kind the same way; every
combinator and the training step go through them, so no code path knows any particular layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax.regularizers import Regularizer

__all__ = [
    "Layer",
    "backward",
    "context_layer",
    "forward",
    "has_state",
    "no_params",
    "no_penalty",
    "no_state",
    "output_shape",
    "weight_penalty",
]

Params = Any  # a pytree of arrays
State = Any  # a pytree of arrays (non-trainable), () for layers without state
PRNGKey = jax.Array


def no_penalty(params: Params) -> tuple[jax.Array | float, Params]:
    """Zero penalty and an all-zero gradient with the structure of `params`.

    The value is a Python ``0.0`` (weakly typed) so that it adds to float32 and float64 alike.
    """
    return 0.0, jax.tree.map(jnp.zeros_like, params)


def no_params(key: PRNGKey) -> tuple[()]:
    """The parameters of a layer without any: ``()`` (the key is not used)."""
    del key
    return ()


def weight_penalty(caller: str, regularizer: Any) -> Callable[[Params], tuple[Any, Params]]:
    """``penalty(params) -> (value, grads)`` of a layer whose ``params`` are ``(w, b)``.

    ``value = regularizer.value(w)`` (e.g. ``l1·Σ|w| + l2·Σw²``), ``grads = (regularizer.grad(w),
    0)``: the bias is never penalized. `no_penalty` when ``regularizer`` is ``None``.

    Raises:
        TypeError: ``regularizer`` is neither ``None`` nor a `nnrs_jax.regularizers.Regularizer`
            (the message names ``caller``).
    """
    if regularizer is None:
        return no_penalty
    if not isinstance(regularizer, Regularizer):
        raise TypeError(
            f"{caller}: regularizer must be nj.l1/l2/elastic_net(...) or None, got {regularizer!r}"
        )

    def penalty(params: Params) -> tuple[Any, Params]:
        grad_w = regularizer.grad(params.w)
        return regularizer.value(params.w), params._replace(w=grad_w, b=jnp.zeros_like(params.b))

    return penalty


def no_state() -> tuple[()]:
    """The state of a layer without non-trainable state: ``()``."""
    return ()


def _same_input(x: jax.Array) -> jax.Array:
    return x


class Layer(NamedTuple):
    """A layer: pure functions, composable with `serial`.

    Attributes:
        init: ``init(key) -> params``; parameter-free layers return ``()``.
        apply: plain layer: ``apply(params, x) -> y`` on a batch ``x`` ``(batch, ...)``;
            context layer: ``apply(params, x, *, state=None, key=None, train=False) -> y``.
        backward: plain: ``backward(params, x, grad_y) -> (grad_params, grad_x)``, the
            vector-Jacobian product of ``apply`` at ``x``; context: the same with the keywords
            of ``apply``, and the same ``key`` reproduces the forward's randomness exactly.
            ``grad_params`` has exactly the tree of ``params``.
        penalty: ``penalty(params) -> (value, grad_params)``, the layer's regularization term
            and its gradient (zero for layers without a regularizer).
        name: used in error messages, e.g. ``"dense(784, 64)"``.
        init_state: ``init_state() -> state``, the initial non-trainable state (``()`` if
            none). The optimizer and the penalty never see it.
        forward: ``None`` for a plain layer; for a context layer ``forward(params, x, *, state,
            key, train) -> (y, new_state)``, where ``new_state`` is ``state`` unless ``train``
            updates it (batch norm's running statistics).
        prepare: ``prepare(x) -> x'``, called once on an input that every step reuses
            (full-batch training); the layer's ``apply``/``backward`` must accept ``x'``.
            Identity by default; `dense` keeps a transposed copy of ``x``
            (`nnrs_jax.layers.dense.Pretransposed`), which only it reads.
    """

    init: Callable[[PRNGKey], Params]
    apply: Callable[..., jax.Array]
    backward: Callable[..., tuple[Params, jax.Array]]
    penalty: Callable[[Params], tuple[jax.Array | float, Params]] = no_penalty
    name: str = "layer"
    init_state: Callable[[], State] = no_state
    forward: Callable[..., tuple[jax.Array, State]] | None = None
    prepare: Callable[[jax.Array], Any] = _same_input


def context_layer(
    init: Callable[[PRNGKey], Params],
    forward_fn: Callable[..., tuple[jax.Array, State]],
    backward_fn: Callable[..., tuple[Params, jax.Array]],
    *,
    name: str,
    init_state: Callable[[], State] = no_state,
    penalty: Callable[[Params], tuple[jax.Array | float, Params]] = no_penalty,
    prepare: Callable[[jax.Array], Any] = _same_input,
) -> Layer:
    """Build a context `Layer` from its ``forward`` and ``backward``; ``apply`` is derived.

    ``forward_fn(params, x, *, state, key, train) -> (y, new_state)`` and
    ``backward_fn(params, x, grad_y, *, state, key, train) -> (grad_params, grad_x)``.
    """

    def apply(
        params: Params,
        x: jax.Array,
        *,
        state: State = None,
        key: PRNGKey | None = None,
        train: bool = False,
    ) -> jax.Array:
        return forward_fn(params, x, state=state, key=key, train=train)[0]

    def backward_kw(
        params: Params,
        x: jax.Array,
        grad_y: jax.Array,
        *,
        state: State = None,
        key: PRNGKey | None = None,
        train: bool = False,
    ) -> tuple[Params, jax.Array]:
        return backward_fn(params, x, grad_y, state=state, key=key, train=train)

    def forward_kw(
        params: Params,
        x: jax.Array,
        *,
        state: State = None,
        key: PRNGKey | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        return forward_fn(params, x, state=state, key=key, train=train)

    return Layer(init, apply, backward_kw, penalty, name, init_state, forward_kw, prepare)


def forward(
    layer: Layer,
    params: Params,
    x: Any,
    *,
    state: State = None,
    key: PRNGKey | None = None,
    train: bool = False,
) -> tuple[jax.Array, State]:
    """Run any layer: ``(y, new_state)``. A plain layer ignores the keywords.

    Example:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> y, state = nj.forward(nj.relu(), (), jnp.array([[-1.0, 2.0]]))
        >>> y.tolist(), state
        ([[0.0, 2.0]], ())
    """
    if layer.forward is None:
        return layer.apply(params, x), layer.init_state() if state is None else state
    return layer.forward(params, x, state=state, key=key, train=train)


def backward(
    layer: Layer,
    params: Params,
    x: Any,
    grad_y: jax.Array,
    *,
    state: State = None,
    key: PRNGKey | None = None,
    train: bool = False,
) -> tuple[Params, jax.Array]:
    """The vector-Jacobian product of any layer: ``(grad_params, grad_x)``."""
    if layer.forward is None:
        return layer.backward(params, x, grad_y)
    return layer.backward(params, x, grad_y, state=state, key=key, train=train)


def has_state(layer: Layer) -> bool:
    """Whether the layer (or any layer inside it) keeps non-trainable state arrays."""
    return bool(jax.tree.leaves(layer.init_state()))


def output_shape(
    layer: Layer, input_shape: tuple[int, ...], dtype: Any = jnp.float32
) -> tuple[int, ...]:
    """The shape of ``layer``'s output for an input of ``input_shape`` (batch axis included).

    Computed with `jax.eval_shape`: nothing is allocated or run. Inference mode.

    Example:
        >>> import nnrs_jax as nj
        >>> cnn = nj.serial(nj.conv2d(1, 8, 3), nj.max_pool(2), nj.flatten())
        >>> nj.output_shape(cnn, (1, 28, 28, 1))
        (1, 1352)
    """
    params = jax.eval_shape(layer.init, jax.random.key(0))
    state = jax.eval_shape(layer.init_state)
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    out = jax.eval_shape(lambda p, s, a: forward(layer, p, a, state=s)[0], params, state, x)
    return tuple(out.shape)
