"""The `Layer` type: pure functions with a hand-written backward, in one canonical signature.

Every layer stores the same two functions (see ``docs/design.md`` and ``docs/layers.md``)::

    forward(params, x, *, state, key, train) -> (y, new_state)
    backward(params, x, grad_y, *, state, key, train) -> (grad_params, grad_x)

``state`` is the layer's non-trainable state (``()`` for most), ``key`` a PRNG key for
stochastic layers, ``train`` the static training switch. Two constructors fill them:

* ``Layer(init, apply, backward, name=...)`` lifts a deterministic, stateless layer written as
  ``apply(params, x)`` and ``backward(params, x, grad_y)`` (as in stax): `dense`, the
  activations and most user layers;
* ``Layer.context(init, forward, backward, name=..., init_state=...)`` takes the keyword form
  directly: `dropout`, `batch_norm`, `serial` and `residual`.

Both wrap the functions in the trace-time contract checks of `nnrs_jax.layers.contract`, so a
layer that returns a wrongly shaped gradient is named at once. `layer_factory` makes layers
built from equal arguments compare equal, so a rebuilt model reuses the compiled training step.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp

from nnrs_jax.layers.contract import check_backward_result, check_forward_result
from nnrs_jax.regularizers import Regularizer

__all__ = [
    "Layer",
    "backward",
    "check_model",
    "forward",
    "has_state",
    "layer_factory",
    "no_params",
    "no_penalty",
    "no_state",
    "output_shape",
    "weight_penalty",
]

Params = Any  # a pytree of arrays
State = Any  # a pytree of arrays (non-trainable), () for layers without state
PRNGKey = jax.Array

GUIDE = "docs/layers.md (writing your own layer)"


def no_penalty(params: Params) -> tuple[jax.Array | float, Params]:
    """Zero penalty and an all-zero gradient with the structure of `params`.

    The value is a Python ``0.0`` (weakly typed) so that it adds to float32 and float64 alike.
    """
    return 0.0, jax.tree.map(jnp.zeros_like, params)


def no_params(key: PRNGKey) -> tuple[()]:
    """The parameters of a layer without any: ``()`` (the key is not used)."""
    del key
    return ()


def weight_penalty(
    caller: str, regularizer: Any, weights: tuple[str, ...] = ("w",)
) -> Callable[[Params], tuple[Any, Params]]:
    """``penalty(params) -> (value, grads)`` of a layer whose ``params`` NamedTuple holds the
    weight matrices named ``weights`` (``("w",)`` for ``(w, b)`` layers).

    ``value = Σ_w regularizer.value(w)`` over those fields (e.g. ``l1·Σ|w| + l2·Σw²``),
    ``grads`` holds ``regularizer.grad(w)`` in them and zeros in every other field: biases,
    scales and tables not named are never penalized. `no_penalty` when ``regularizer`` is
    ``None``.

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
        value = sum(regularizer.value(getattr(params, field)) for field in weights)
        grads = {
            field: regularizer.grad(leaf) if field in weights else jnp.zeros_like(leaf)
            for field, leaf in zip(params._fields, params, strict=True)
        }
        return value, type(params)(**grads)

    return penalty


def no_state() -> tuple[()]:
    """The state of a layer without non-trainable state: ``()``."""
    return ()


def _same_input(x: jax.Array) -> jax.Array:
    return x


def _check_function(caller: str, arg: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{caller}: {arg} must be a function, got {type(fn).__name__}")


_FIELDS = ("init", "forward", "backward", "penalty", "name", "init_state", "prepare")


class Layer:
    """A layer: ``init``, ``forward`` and a hand-written ``backward``, composable with `serial`.

    ``Layer(init, apply, backward, *, name, penalty, prepare)`` builds a deterministic,
    stateless layer from ``apply(params, x) -> y`` and ``backward(params, x, grad_y) ->
    (grad_params, grad_x)``, the vector-Jacobian product of ``apply`` at ``x``; `Layer.context`
    builds one that takes ``state``, ``key`` and ``train``. Either way the layer stores:

    Attributes:
        init: ``init(key) -> params``, any pytree of arrays (a bare array, a NamedTuple, a
            dict); ``()`` for a layer without parameters.
        forward: ``forward(params, x, *, state=None, key=None, train=False) -> (y,
            new_state)``; ``new_state`` is ``state`` unless ``train`` updates it.
        backward: ``backward(params, x, grad_y, *, state=None, key=None, train=False) ->
            (grad_params, grad_x)``; ``grad_params`` has exactly the tree, shapes and dtypes of
            ``params`` (a per-feature parameter's gradient is summed over the batch) and
            ``grad_x`` the shape and dtype of ``x``; the same ``key`` reproduces the forward's
            randomness. Both results are checked at trace time
            (`nnrs_jax.layers.contract`): a break raises
            `nnrs_jax.layers.contract.LayerContractError` naming the layer.
        penalty: ``penalty(params) -> (value, grad_params)``, the layer's regularization term
            and its gradient (zero for layers without a regularizer).
        name: used in error messages, e.g. ``"dense(784, 64)"``.
        init_state: ``init_state() -> state``, the initial non-trainable state (``()`` if
            none). The optimizer and the penalty never see it.
        prepare: ``prepare(x) -> x'``, called once on an input that every step reuses
            (full-batch training); the layer's ``forward``/``backward`` must accept ``x'``.
            Identity by default; `dense` keeps a transposed copy of ``x``.

    Two layers are equal when they were built from equal arguments by the same `layer_factory`
    (every built-in layer), or from the same functions; equal layers share compiled steps.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> swish = nj.Layer(
        ...     nj.no_params,
        ...     lambda p, x: x * jax.nn.sigmoid(x),
        ...     lambda p, x, dy: ((), dy * (jax.nn.sigmoid(x) * (1 + x * (1 - jax.nn.sigmoid(x))))),
        ...     name="swish",
        ... )
        >>> swish.apply((), jnp.zeros((2, 3))).shape
        (2, 3)
        >>> nj.check_layer(swish, jnp.linspace(-2.0, 2.0, 6).reshape(2, 3)).ok
        True
    """

    __slots__ = (*_FIELDS, "_identity")

    init: Callable[[PRNGKey], Params]
    forward: Callable[..., tuple[jax.Array, State]]
    backward: Callable[..., tuple[Params, jax.Array]]
    penalty: Callable[[Params], tuple[jax.Array | float, Params]]
    name: str
    init_state: Callable[[], State]
    prepare: Callable[[jax.Array], Any]
    _identity: Hashable

    def __init__(
        self,
        init: Callable[[PRNGKey], Params],
        apply: Callable[[Params, Any], jax.Array],
        backward: Callable[[Params, Any, jax.Array], tuple[Params, jax.Array]],
        *,
        name: str = "layer",
        penalty: Callable[[Params], tuple[jax.Array | float, Params]] = no_penalty,
        prepare: Callable[[jax.Array], Any] = _same_input,
    ) -> None:
        for arg, fn in (("init", init), ("apply", apply), ("backward", backward),
                        ("penalty", penalty), ("prepare", prepare)):  # fmt: skip
            _check_function("Layer", arg, fn)

        def forward_fn(params, x, *, state=None, key=None, train=False):
            del key, train
            y = apply(params, x)
            return check_forward_result(name, None, (y, () if state is None else state))

        def backward_fn(params, x, grad_y, *, state=None, key=None, train=False):
            del state, key, train
            return check_backward_result(name, params, x, backward(params, x, grad_y))

        identity = ("Layer", init, apply, backward, name, penalty, prepare)
        self._fill(init, forward_fn, backward_fn, penalty, name, no_state, prepare, identity)

    @classmethod
    def context(
        cls,
        init: Callable[[PRNGKey], Params],
        forward: Callable[..., tuple[jax.Array, State]],
        backward: Callable[..., tuple[Params, jax.Array]],
        *,
        name: str = "layer",
        init_state: Callable[[], State] = no_state,
        penalty: Callable[[Params], tuple[jax.Array | float, Params]] = no_penalty,
        prepare: Callable[[jax.Array], Any] = _same_input,
    ) -> Layer:
        """A layer that takes ``state``, ``key`` and ``train``, from its keyword-form functions.

        ``forward(params, x, *, state, key, train) -> (y, new_state)`` and ``backward(params,
        x, grad_y, *, state, key, train) -> (grad_params, grad_x)``; the stored functions give
        the keywords the defaults ``state=None, key=None, train=False``.
        """
        for arg, fn in (("init", init), ("forward", forward), ("backward", backward),
                        ("init_state", init_state), ("penalty", penalty),
                        ("prepare", prepare)):  # fmt: skip
            _check_function("Layer.context", arg, fn)

        def forward_fn(params, x, *, state=None, key=None, train=False):
            result = forward(params, x, state=state, key=key, train=train)
            return check_forward_result(name, state, result)

        def backward_fn(params, x, grad_y, *, state=None, key=None, train=False):
            result = backward(params, x, grad_y, state=state, key=key, train=train)
            return check_backward_result(name, params, x, result)

        identity = ("Layer.context", init, forward, backward, name, init_state, penalty, prepare)
        layer = object.__new__(cls)
        layer._fill(init, forward_fn, backward_fn, penalty, name, init_state, prepare, identity)
        return layer

    def _fill(self, *values: Any) -> None:
        for field, value in zip((*_FIELDS, "_identity"), values, strict=True):
            object.__setattr__(self, field, value)

    def apply(
        self,
        params: Params,
        x: Any,
        *,
        state: State = None,
        key: PRNGKey | None = None,
        train: bool = False,
    ) -> jax.Array:
        """``y`` alone: ``forward(params, x, state=state, key=key, train=train)[0]``."""
        return self.forward(params, x, state=state, key=key, train=train)[0]

    def with_identity(self, identity: Hashable) -> Layer:
        """This layer, comparing equal to every layer of the same ``identity`` (hashable)."""
        layer = object.__new__(type(self))
        layer._fill(*(getattr(self, f) for f in _FIELDS), identity)
        return layer

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Layer is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layer) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __repr__(self) -> str:
        return f"Layer({self.name})"


def layer_factory(factory: Callable[..., Layer]) -> Callable[..., Layer]:
    """Decorate a function that builds a `Layer`: equal arguments give equal layers.

    Layers hold closures, which compare by identity; a decorated factory gives each layer it
    builds the identity ``(factory, bound arguments with defaults)``, so ``dense(784, 64) ==
    dense(784, 64)`` and a model rebuilt in a notebook cell reuses the compiled step. Arguments
    that cannot be hashed (an array) leave the layer compared by identity.

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.serial(nj.dense(4, 2), nj.relu()) == nj.serial(nj.dense(4, 2, init="he"), nj.relu())
        True
    """
    signature = inspect.signature(factory)
    where = f"{factory.__module__}.{factory.__qualname__}"

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Layer:
        layer = factory(*args, **kwargs)
        if not isinstance(layer, Layer):
            raise TypeError(f"{factory.__name__}: must return a Layer, got {type(layer).__name__}")
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        identity = (where, tuple(bound.arguments.items()))
        try:
            hash(identity)
        except TypeError:
            return layer
        return layer.with_identity(identity)

    return build


def check_model(caller: str, model: Any, arg: str = "model") -> Layer:
    """``model`` if it is a `Layer`; otherwise a TypeError naming the contract and the guide."""
    if isinstance(model, Layer):
        return model
    kind = type(model)
    got = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    hint = ""
    if inspect.isfunction(model) or inspect.isclass(model):
        hint = " (did you forget to call the factory, e.g. nj.relu() rather than nj.relu?)"
    raise TypeError(
        f"{caller}: {arg} must be a Layer (nj.Layer: init, forward and a hand-written backward, "
        f"e.g. nj.serial(nj.dense(784, 10))), got {got}{hint}; to wrap your own function or a "
        f"module of another library, see {GUIDE}"
    )


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

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> y, state = nj.forward(nj.relu(), (), jnp.array([[-1.0, 2.0]]))
        >>> y.tolist(), state
        ([[0.0, 2.0]], ())
    """
    layer = check_model("forward", layer, "layer")
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
    layer = check_model("backward", layer, "layer")
    return layer.backward(params, x, grad_y, state=state, key=key, train=train)


def has_state(layer: Layer) -> bool:
    """Whether the layer (or any layer inside it) keeps non-trainable state arrays."""
    return bool(jax.tree.leaves(layer.init_state()))


def output_shape(
    layer: Layer, input_shape: tuple[int, ...], dtype: Any = jnp.float32
) -> tuple[int, ...]:
    """The shape of ``layer``'s output for an input of ``input_shape`` (batch axis included).

    Computed with `jax.eval_shape`: nothing is allocated or run. Inference mode.

    Examples:
        >>> import nnrs_jax as nj
        >>> cnn = nj.serial(nj.conv2d(1, 8, 3), nj.max_pool(2), nj.flatten())
        >>> nj.output_shape(cnn, (1, 28, 28, 1))
        (1, 1352)
    """
    layer = check_model("output_shape", layer, "layer")
    params = jax.eval_shape(layer.init, jax.random.key(0))
    state = jax.eval_shape(layer.init_state)
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    out = jax.eval_shape(lambda p, s, a: forward(layer, p, a, state=s)[0], params, state, x)
    return tuple(out.shape)
