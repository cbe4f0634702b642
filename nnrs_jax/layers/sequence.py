"""Sequence layers: token and position embeddings, layer normalisation and time pooling.

Sequences are ``(batch, time, features)`` arrays; token ids are ``(batch, time)`` integers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nnrs_jax import initializers
from nnrs_jax._validate import check_float, check_int
from nnrs_jax.layers._checks import check_floating, check_grad_shape, check_sequence
from nnrs_jax.layers.base import Layer, layer_factory, no_params, weight_penalty
from nnrs_jax.regularizers import Regularizer

__all__ = [
    "EmbeddingParams",
    "LayerNormParams",
    "PositionalEmbeddingParams",
    "embedding",
    "last_over_time",
    "layer_norm",
    "mean_over_time",
    "positional_embedding",
]


class EmbeddingParams(NamedTuple):
    """Parameters of `embedding`: the ``table`` ``(vocab_size, dim)``, one row per token."""

    table: jax.Array


class PositionalEmbeddingParams(NamedTuple):
    """Parameters of `positional_embedding`: the ``table`` ``(max_time, dim)``, one row per step."""

    table: jax.Array


class LayerNormParams(NamedTuple):
    """Parameters of `layer_norm`: ``scale`` γ ``(dim,)`` and ``bias`` β ``(dim,)``."""

    scale: jax.Array
    bias: jax.Array


def _check_dtype(caller: str, dtype: jnp.dtype) -> None:
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{caller}: dtype must be a floating dtype, got {jnp.dtype(dtype)}")


def _normal(caller: str, init: initializers.Initializer | None, std: float):
    """``init`` resolved, or ``N(0, std²)`` when it is ``None``."""
    if init is None:
        return lambda key, shape, dtype: std * jax.random.normal(key, shape, dtype)
    return initializers.resolve(init, caller=caller)


@layer_factory
def embedding(
    vocab_size: int,
    dim: int,
    *,
    init: str | initializers.Initializer | None = None,
    regularizer: Regularizer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Token embedding: a learned vector per token id.

    Forward, for integer ids ``(batch, time)`` and the table ``E`` ``(vocab_size, dim)``::

        y[b, t] = E[clip(ids[b, t], 0, vocab_size − 1)]     (batch, time, dim)

    Backward, given ``dy`` ``(batch, time, dim)``: each row of ``E`` gathers the gradients of
    the positions that read it (a scatter-add), and the ids get a zero gradient::

        dE[v] = Σ_{b, t : ids[b, t] = v} dy[b, t]           (vocab_size, dim)
        dids = 0                                           (batch, time), in the params dtype

    Ids outside ``[0, vocab_size)`` cannot be caught while tracing: they are clipped to the
    nearest valid id (0 or ``vocab_size − 1``), in the forward and the backward alike; negative
    ids do not wrap around. Reference: Bengio et al. 2003, "A Neural Probabilistic Language
    Model". Params `EmbeddingParams`.

    Args:
        vocab_size: the number of tokens, a positive int.
        dim: the embedding width, a positive int.
        init: ``None`` (default) for ``N(0, 1)`` entries (as PyTorch), or ``"he"``,
            ``"lecun"``, ``"glorot"`` or a function ``init(key, (vocab_size, dim), dtype)``.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on the table.
        dtype: dtype of the table, float32 by default.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.layers.sequence import embedding
        >>> layer = embedding(10, 4)
        >>> params = layer.init(jax.random.key(0))
        >>> ids = jnp.array([[1, 2, 1]])
        >>> layer.apply(params, ids).shape
        (1, 3, 4)
        >>> grads, _ = layer.backward(params, ids, jnp.ones((1, 3, 4)))
        >>> grads.table[:3, 0].tolist()  # token 1 is read twice
        [0.0, 2.0, 1.0]
    """
    vocab_size = check_int("embedding", "vocab_size", vocab_size, low=1)
    dim = check_int("embedding", "dim", dim, low=1)
    _check_dtype("embedding", dtype)
    init_fn = _normal("embedding", init, 1.0)
    name = f"embedding({vocab_size}, {dim})"

    def init_params(key: jax.Array) -> EmbeddingParams:
        return EmbeddingParams(init_fn(key, (vocab_size, dim), dtype))

    def checked_ids(ids: jax.Array) -> jax.Array:
        dtype = getattr(ids, "dtype", None)
        if dtype is None or not hasattr(ids, "shape"):
            raise TypeError(f"{name}: ids must be an array, got {type(ids).__name__}")
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{name}: ids must have an integer dtype (token ids), got {dtype}; "
                "cast them with ids.astype(jnp.int32)"
            )
        if len(ids.shape) != 2:
            raise ValueError(
                f"{name}: ids must have shape (batch, time) (rank 2), got {tuple(ids.shape)} "
                f"(rank {len(ids.shape)})"
            )
        return jnp.clip(ids, 0, vocab_size - 1)

    def apply(params: EmbeddingParams, ids: jax.Array) -> jax.Array:
        return params.table[checked_ids(ids)]

    def backward(
        params: EmbeddingParams, ids: jax.Array, grad_y: jax.Array
    ) -> tuple[EmbeddingParams, jax.Array]:
        index = checked_ids(ids)
        check_grad_shape(name, grad_y, (*ids.shape, dim))
        grad_table = jnp.zeros_like(params.table).at[index].add(grad_y)
        return EmbeddingParams(grad_table), jnp.zeros(ids.shape, params.table.dtype)

    penalty = weight_penalty("embedding", regularizer, ("table",))
    return Layer(init_params, apply, backward, name=name, penalty=penalty)


@layer_factory
def positional_embedding(
    max_time: int,
    dim: int,
    *,
    init: str | initializers.Initializer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Learned position embedding, added to a sequence.

    Forward, for ``x`` ``(batch, time, dim)`` with ``time <= max_time`` and the table ``P``
    ``(max_time, dim)``::

        y[b, t] = x[b, t] + P[t]                           (batch, time, dim)

    Backward, given ``dy`` ``(batch, time, dim)``; rows of ``P`` past ``time`` get zero::

        dP[t] = Σ_b dy[b, t]  for t < time, else 0         (max_time, dim)
        dx = dy                                            (batch, time, dim)

    Reference: Gehring et al. 2017, "Convolutional Sequence to Sequence Learning" (learned
    positions, as in BERT and GPT-2). Params `PositionalEmbeddingParams`.

    Args:
        max_time: the longest sequence the layer accepts, a positive int.
        dim: the feature width of ``x``, a positive int.
        init: ``None`` (default) for ``N(0, 0.02²)`` entries (as BERT and GPT-2), or ``"he"``,
            ``"lecun"``, ``"glorot"`` or a function ``init(key, (max_time, dim), dtype)``.
        dtype: dtype of the table, float32 by default (use the input's).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.layers.sequence import positional_embedding
        >>> layer = positional_embedding(8, 4)
        >>> params = layer.init(jax.random.key(0))
        >>> layer.apply(params, jnp.zeros((2, 5, 4))).shape  # any time <= 8
        (2, 5, 4)
        >>> grads, _ = layer.backward(params, jnp.zeros((2, 5, 4)), jnp.ones((2, 5, 4)))
        >>> grads.table[:, 0].tolist()
        [2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    """
    max_time = check_int("positional_embedding", "max_time", max_time, low=1)
    dim = check_int("positional_embedding", "dim", dim, low=1)
    _check_dtype("positional_embedding", dtype)
    init_fn = _normal("positional_embedding", init, 0.02)
    name = f"positional_embedding({max_time}, {dim})"

    def init_params(key: jax.Array) -> PositionalEmbeddingParams:
        return PositionalEmbeddingParams(init_fn(key, (max_time, dim), dtype))

    def check(x: jax.Array) -> int:
        check_sequence(name, x, dim)
        time = x.shape[1]
        if time > max_time:
            raise ValueError(
                f"{name}: x has {time} time steps, more than max_time {max_time} "
                f"(shape {tuple(x.shape)})"
            )
        return time

    def apply(params: PositionalEmbeddingParams, x: jax.Array) -> jax.Array:
        time = check(x)
        return x + params.table[None, :time, :]

    def backward(
        params: PositionalEmbeddingParams, x: jax.Array, grad_y: jax.Array
    ) -> tuple[PositionalEmbeddingParams, jax.Array]:
        time = check(x)
        check_grad_shape(name, grad_y, tuple(x.shape))
        grad_table = jnp.zeros_like(params.table).at[:time].set(jnp.sum(grad_y, axis=0))
        return PositionalEmbeddingParams(grad_table), grad_y

    return Layer(init_params, apply, backward, name=name)


@layer_factory
def layer_norm(dim: int, *, eps: float = 1e-5, dtype: jnp.dtype = jnp.float32) -> Layer:
    """Layer normalisation over the last axis, per example and position.

    Forward, for ``x`` ``(batch, ..., dim)``, with ``μ`` and the biased ``σ²`` taken over the
    last axis of each row::

        x̂ = (x − μ) / √(σ² + eps)
        y = γ·x̂ + β                                        (batch, ..., dim)

    Backward, given ``dy``, with ``s = √(σ² + eps)`` and means over the last axis::

        dx̂ = dy·γ
        dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / s
        dγ = Σ dy·x̂,  dβ = Σ dy                           (sums over all axes but the last)

    The statistics are per row, so unlike `nnrs_jax.batch_norm` the layer is the same in
    training and inference and has no state. Reference: Ba, Kiros & Hinton 2016, "Layer
    Normalization". Params `LayerNormParams` (γ = 1, β = 0 at init).

    Args:
        dim: size of the last axis of ``x``, a positive int.
        eps: added to the variance before the square root, ``> 0``.
        dtype: dtype of the params, float32 by default (use the input's).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.layers.sequence import layer_norm
        >>> layer = layer_norm(2)
        >>> params = layer.init(jax.random.key(0))
        >>> layer.apply(params, jnp.array([[[1.0, 3.0], [10.0, 30.0]]])).round(3).tolist()
        [[[-1.0, 1.0], [-1.0, 1.0]]]
    """
    dim = check_int("layer_norm", "dim", dim, low=1)
    eps = check_float("layer_norm", "eps", eps, low=0.0, low_open=True)
    _check_dtype("layer_norm", dtype)
    name = f"layer_norm({dim})"

    def init_params(key: jax.Array) -> LayerNormParams:
        del key
        return LayerNormParams(jnp.ones((dim,), dtype), jnp.zeros((dim,), dtype))

    def normalise(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(x̂, 1/s)``, after checking ``x``; ``1/s`` keeps the last axis as size 1."""
        check_floating(name, x)
        if x.ndim < 2 or x.shape[-1] != dim:
            raise ValueError(
                f"{name}: x must have shape (batch, ..., {dim}) with {dim} features on the last "
                f"axis, got {tuple(x.shape)}"
            )
        centred = x - jnp.mean(x, axis=-1, keepdims=True)
        inv_std = lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
        return centred * inv_std, inv_std

    def per_feature(v: jax.Array, x: jax.Array) -> jax.Array:
        return v.reshape((1,) * (x.ndim - 1) + (dim,))

    def apply(params: LayerNormParams, x: jax.Array) -> jax.Array:
        x_hat, _ = normalise(x)
        return per_feature(params.scale, x) * x_hat + per_feature(params.bias, x)

    def backward(
        params: LayerNormParams, x: jax.Array, grad_y: jax.Array
    ) -> tuple[LayerNormParams, jax.Array]:
        x_hat, inv_std = normalise(x)
        check_grad_shape(name, grad_y, tuple(x.shape))
        axes = tuple(range(x.ndim - 1))
        grad_x_hat = grad_y * per_feature(params.scale, x)
        mean_g = jnp.mean(grad_x_hat, axis=-1, keepdims=True)
        mean_gx = jnp.mean(grad_x_hat * x_hat, axis=-1, keepdims=True)
        grad_x = inv_std * (grad_x_hat - mean_g - x_hat * mean_gx)
        grads = LayerNormParams(jnp.sum(grad_y * x_hat, axis=axes), jnp.sum(grad_y, axis=axes))
        return grads, grad_x

    return Layer(init_params, apply, backward, name=name)


@layer_factory
def mean_over_time() -> Layer:
    """Average a sequence over time: ``(batch, time, features)`` → ``(batch, features)``.

    Forward and backward, given ``dy`` ``(batch, features)``::

        y[b] = (1/T)·Σ_t x[b, t]
        dx[b, t] = dy[b] / T                               (batch, time, features)

    Reference: global average pooling over time, Lin, Chen & Yan 2014, "Network In Network".

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.layers.sequence import mean_over_time
        >>> mean_over_time().apply((), jnp.arange(6.0).reshape(1, 3, 2)).tolist()
        [[2.0, 3.0]]
    """
    name = "mean_over_time"

    def apply(params: tuple[()], x: jax.Array) -> jax.Array:
        check_sequence(name, x)
        return jnp.mean(x, axis=1)

    def backward(params: tuple[()], x: jax.Array, grad_y: jax.Array) -> tuple[tuple[()], jax.Array]:
        check_sequence(name, x)
        batch, time, features = x.shape
        check_grad_shape(name, grad_y, (batch, features))
        return (), jnp.broadcast_to(grad_y[:, None, :] / time, x.shape)

    return Layer(no_params, apply, backward, name=name)


@layer_factory
def last_over_time() -> Layer:
    """The last step of a sequence: ``(batch, time, features)`` → ``(batch, features)``.

    Forward and backward, given ``dy`` ``(batch, features)``, with ``T`` the length::

        y[b] = x[b, T − 1]
        dx[b, t] = dy[b] if t = T − 1, else 0              (batch, time, features)

    The usual readout of a causal model, whose last step has seen the whole sequence.
    Reference: Sutskever, Vinyals & Le 2014, "Sequence to Sequence Learning with Neural
    Networks" (the final state as the summary of a sequence).

    Examples:
        >>> import jax.numpy as jnp
        >>> from nnrs_jax.layers.sequence import last_over_time
        >>> last_over_time().apply((), jnp.arange(6.0).reshape(1, 3, 2)).tolist()
        [[4.0, 5.0]]
    """
    name = "last_over_time"

    def apply(params: tuple[()], x: jax.Array) -> jax.Array:
        check_sequence(name, x)
        return x[:, -1, :]

    def backward(params: tuple[()], x: jax.Array, grad_y: jax.Array) -> tuple[tuple[()], jax.Array]:
        check_grad_shape(name, grad_y, tuple(apply(params, x).shape))
        return (), jnp.zeros_like(x).at[:, -1, :].set(grad_y)

    return Layer(no_params, apply, backward, name=name)
