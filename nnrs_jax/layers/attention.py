"""Multi-head scaled dot-product self-attention with a hand-written backward pass."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax import initializers
from nnrs_jax._validate import check_bool, check_int
from nnrs_jax.layers._checks import check_grad_shape, check_sequence
from nnrs_jax.layers.base import Layer, layer_factory, weight_penalty
from nnrs_jax.regularizers import Regularizer

__all__ = ["AttentionParams", "multi_head_attention"]


class AttentionParams(NamedTuple):
    """Parameters of `multi_head_attention` for ``dim`` features.

    Attributes:
        w_qkv: ``(dim, 3·dim)``, the query, key and value projections side by side: columns
            ``[0, dim)`` give ``Q``, ``[dim, 2·dim)`` give ``K``, ``[2·dim, 3·dim)`` give ``V``;
            within each block head ``h`` owns columns ``[h·d, (h+1)·d)``.
        b_qkv: ``(3·dim,)``, the matching biases.
        w_o: ``(dim, dim)``, the output projection of the concatenated heads.
        b_o: ``(dim,)``, its bias.
    """

    w_qkv: jax.Array
    b_qkv: jax.Array
    w_o: jax.Array
    b_o: jax.Array


GROUP_BYTES = 4 << 20
"""The most bytes of one group's ``(examples, heads, time, time)`` arrays: the attention runs
over groups of examples (a ``lax.map``) so that its score, weight and gradient arrays stay in
the CPU's cache instead of streaming through memory. The recipe's short sequences fit in one
group, and run without a loop (`benchmarks/RESULTS.md` has the measurements)."""


def _by_groups(fn: Callable[..., Any], per_example: int, *arrays: jax.Array | None) -> Any:
    """``fn(*arrays)``, computed over groups of examples (the leading axis) whose
    ``per_example`` bytes together stay within `GROUP_BYTES`: the largest such divisor of the
    batch, at least one example. Each example's result is that of one call, up to rounding."""
    batch = arrays[0].shape[0]
    fit = max(1, GROUP_BYTES // per_example)
    size = max(e for e in range(1, min(batch, fit) + 1) if batch % e == 0)
    if size == batch:
        return fn(*arrays)
    groups = jax.tree.map(lambda a: a.reshape(batch // size, size, *a.shape[1:]), arrays)
    out = jax.lax.map(lambda a: fn(*a), groups)
    return jax.tree.map(lambda a: a.reshape(batch, *a.shape[2:]), out)


@layer_factory
def multi_head_attention(
    dim: int,
    heads: int,
    *,
    causal: bool = False,
    init: str | initializers.Initializer = "glorot",
    regularizer: Regularizer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Multi-head scaled dot-product self-attention over a sequence.

    Forward, for ``x`` ``(batch, time, dim)`` and ``heads`` heads of width ``d = dim / heads``
    (per example ``b`` and head ``h``; ``Q, K, V, O`` are ``(time, d)``)::

        [Q | K | V] = x·W_qkv + b_qkv                          (batch, time, 3·dim)
        S = Q·Kᵀ / √d                                         (batch, heads, time, time)
        S[i, j] = −∞ for j > i                                 (only with causal=True)
        P = softmax(S) over the key axis j                     (batch, heads, time, time)
        O = P·V                                                (batch, time, heads, d)
        y = concat_heads(O)·W_o + b_o                          (batch, time, dim)

    With a padding mask, ``x`` is the pair ``(x, mask)``, ``mask`` boolean ``(batch, time)``
    and True at the real positions (Flax's and equinox's convention; PyTorch's
    ``key_padding_mask`` is its negation); no query attends to a padded key::

        S[b, :, i, j] = min_float for mask[b, j] False       (the dtype's most negative value)

    The softmax subtracts each row's maximum; a masked entry gives ``P = 0`` exactly (the
    causal diagonal is never masked, so every row has a finite maximum and no NaN arises; a
    row whose every key is padding averages over them all). The outputs at padded query
    positions are computed like any other and mean nothing: mask them out of the loss or the
    pooling.

    Backward, given ``dy = ∂L/∂y`` ``(batch, time, dim)``. The forward pass keeps ``O`` and
    each row's softmax statistics (its maximum and ``1/Σ_j exp(S_ij − max)``) in one array,
    which the backward pass reruns (XLA computes the two once in a training step); it then
    recomputes ``P = exp(S − max)/Σ`` from ``Q``, ``K`` and those statistics, without the
    reductions::

        dW_o = Σ_batch,time concat_heads(O)ᵀ·dy     db_o = Σ_batch,time dy
        dO = dy·W_oᵀ, split into heads
        dP = dO·Vᵀ                dV = Pᵀ·dO
        dS = P ⊙ (dP − Σ_j dP ⊙ P)        (the softmax Jacobian; masked entries set to 0)
                                           (Σ_j dP_ij·P_ij = Σ_c dO_ic·O_ic: over d, not time)
        dQ = dS·K / √d            dK = dSᵀ·Q / √d
        dqkv = [dQ | dK | dV]
        dW_qkv = Σ_batch,time xᵀ·dqkv     db_qkv = Σ_batch,time dqkv     dx = dqkv·W_qkvᵀ

    With a mask, ``grad_x`` is the pair ``(dx, None)``: the mask gets no gradient.

    Long sequences: where the batch's ``(batch, heads, time, time)`` arrays exceed
    ``GROUP_BYTES`` (4 MiB), both passes run over groups of examples (a ``lax.map``), so that
    each group's score, weight and gradient arrays stay in the CPU's cache (like
    FlashAttention's blocks, Dao et al. 2022, with whole rows); each example gets the values
    of one call, up to rounding.

    Reference: Vaswani et al. 2017, "Attention Is All You Need", sections 3.2.1 and 3.2.2.

    Args:
        dim: the features per position (the model width), a positive int.
        heads: the number of heads, a positive int that divides ``dim``.
        causal: if True, position ``i`` attends only to positions ``j <= i`` (a decoder).
        init: the initializer of ``W_qkv`` and ``W_o``: ``"glorot"`` (default), ``"he"``,
            ``"lecun"`` or a function of `nnrs_jax.initializers`; biases start at zero.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on ``W_qkv`` and ``W_o`` (never on
            the biases).
        dtype: dtype of the parameters, float32 by default; ``x`` must have the same.

    Returns:
        A `nnrs_jax.Layer` mapping ``(batch, time, dim)``, or ``(x, mask)``, to ``(batch,
        time, dim)``, with `AttentionParams`.

    Raises:
        TypeError: an argument has the wrong type, or ``dtype`` is not floating.
        ValueError: ``dim`` or ``heads`` is not positive, or ``heads`` does not divide ``dim``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from nnrs_jax.layers.attention import multi_head_attention
        >>> layer = multi_head_attention(8, 2, causal=True)
        >>> params = layer.init(jax.random.key(0))
        >>> params.w_qkv.shape, params.b_qkv.shape, params.w_o.shape, params.b_o.shape
        ((8, 24), (24,), (8, 8), (8,))
        >>> x = jax.random.normal(jax.random.key(1), (2, 5, 8))
        >>> layer.apply(params, x).shape
        (2, 5, 8)
        >>> grads, dx = layer.backward(params, x, jnp.ones((2, 5, 8)))
        >>> grads.w_qkv.shape, dx.shape
        ((8, 24), (2, 5, 8))
    """
    caller = "multi_head_attention"
    dim = check_int(caller, "dim", dim, low=1)
    heads = check_int(caller, "heads", heads, low=1)
    causal = check_bool(caller, "causal", causal)
    if dim % heads:
        raise ValueError(
            f"{caller}: dim must be divisible by heads, got dim={dim} and heads={heads} "
            f"(dim % heads = {dim % heads})"
        )
    init_fn = initializers.resolve(init, caller=caller)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{caller}: dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    d = dim // heads
    scale = 1.0 / math.sqrt(d)
    name = f"{caller}({dim}, {heads}{', causal=True' if causal else ''})"

    def init_params(key: jax.Array) -> AttentionParams:
        k_qkv, k_o = jax.random.split(key)
        # The three projections are drawn as separate (dim, dim) matrices: fan_out = dim each.
        w_qkv = jnp.concatenate(
            [init_fn(k, (dim, dim), dtype) for k in jax.random.split(k_qkv, 3)], axis=1
        )
        return AttentionParams(
            w_qkv=w_qkv,
            b_qkv=jnp.zeros((3 * dim,), dtype),
            w_o=init_fn(k_o, (dim, dim), dtype),
            b_o=jnp.zeros((dim,), dtype),
        )

    def mask(time: int) -> jax.Array:
        """``(1, 1, time, time)``: True where query ``i`` may attend to key ``j`` (``j <= i``)."""
        rows = jnp.arange(time)
        return (rows[None, :] <= rows[:, None])[None, None, :, :]

    def split(x: jax.Array | tuple) -> tuple[jax.Array, jax.Array | None]:
        """``x`` or ``(x, padding)``, checked: the sequence and the boolean padding mask."""
        if type(x) is not tuple:
            check_sequence(name, x, dim)
            return x, None
        if len(x) != 2:
            raise TypeError(f"{name}: x must be an array or a pair (x, mask), got a tuple of "
                            f"{len(x)}")  # fmt: skip
        x, keep = x
        check_sequence(name, x, dim)
        if not (hasattr(keep, "shape") and hasattr(keep, "dtype")) or keep.dtype != jnp.bool_:
            got = keep.dtype if hasattr(keep, "dtype") else type(keep).__name__
            raise TypeError(f"{name}: mask must be a boolean array (True: a real position), "
                            f"got {got}")  # fmt: skip
        if tuple(keep.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{name}: mask must have shape (batch, time) = {tuple(x.shape[:2])}, "
                             f"got {tuple(keep.shape)}")  # fmt: skip
        return x, keep

    def project(params: AttentionParams, x: jax.Array) -> tuple[jax.Array, ...]:
        """``Q, K, V``, each ``(batch, time, heads, d)``."""
        if x.dtype != params.w_qkv.dtype:
            raise TypeError(
                f"{name}: x must have the dtype of the parameters {params.w_qkv.dtype}, "
                f"got {x.dtype}"
            )
        batch, time, _ = x.shape
        qkv = jnp.einsum("btd,de->bte", x, params.w_qkv) + params.b_qkv[None, None, :]
        qkv = qkv.reshape(batch, time, 3, heads, d)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def scores(q: jax.Array, k: jax.Array, keep: jax.Array | None) -> jax.Array:
        """``S = Q·Kᵀ/√d`` ``(batch, heads, time_q, time_k)``, masked."""
        s = jnp.einsum("bihc,bjhc->bhij", q, k) * scale
        if causal:
            s = jnp.where(mask(q.shape[1]), s, -jnp.inf)
        if keep is not None:
            # The most negative finite value, not −∞: a query with no real key left (a whole
            # sequence of padding) then averages over every key instead of giving NaN.
            s = jnp.where(keep[:, None, None, :], s, jnp.finfo(s.dtype).min)
        return s

    def attend(q: jax.Array, k: jax.Array, v: jax.Array, keep: jax.Array | None) -> jax.Array:
        """``[O | m | r]`` ``(batch, time, heads, d + 2)``: ``O = P·V`` and each row's softmax
        statistics, its maximum ``m`` and ``r = 1/Σ_j exp(S_ij − m_i)``, so that the backward
        pass recomputes ``P = exp(S − m)·r`` without the reductions. One array, so
        that the forward pass and the one `backward` reruns are one computation for XLA."""
        s = scores(q, k, keep)
        m = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
        e = jnp.exp(s - m)
        r = 1 / jnp.sum(e, axis=-1, keepdims=True)
        o = jnp.einsum("bhij,bjhc->bihc", e * r, v)
        stats = jnp.swapaxes(jnp.concatenate([m, r], axis=-1), 1, 2)  # (batch, time, heads, 2)
        return jnp.concatenate([o, stats], axis=-1)

    def attend_backward(
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        keep: jax.Array | None,
        out: jax.Array,
        grad_o: jax.Array,
    ) -> tuple[jax.Array, ...]:
        """``dQ``, ``dK``, ``dV`` (each ``(batch, time, heads, d)``) given `attend`'s ``out``
        and ``dO``."""
        o, m, r = out[..., :d], out[..., d : d + 1], out[..., d + 1 :]
        p = jnp.exp(scores(q, k, keep) - jnp.swapaxes(m, 1, 2)) * jnp.swapaxes(r, 1, 2)
        grad_p = jnp.einsum("bihc,bjhc->bhij", grad_o, v)
        grad_v = jnp.einsum("bhij,bihc->bjhc", p, grad_o)
        # Σ_j dP_ij·P_ij = Σ_c dO_ic·O_ic per head (O = P·V): a sum over d, not over time.
        row = jnp.einsum("bihc,bihc->bhi", grad_o, o)[..., None]
        grad_s = p * (grad_p - row)
        if causal:
            grad_s = jnp.where(mask(q.shape[1]), grad_s, jnp.zeros_like(grad_s))
        if keep is not None:  # the constant of a padded entry gets no gradient
            grad_s = jnp.where(keep[:, None, None, :], grad_s, jnp.zeros_like(grad_s))
        grad_q = jnp.einsum("bhij,bjhc->bihc", grad_s, k) * scale
        grad_k = jnp.einsum("bhij,bihc->bjhc", grad_s, q) * scale
        return grad_q, grad_k, grad_v

    def by_groups(fn: Callable[..., Any], q: jax.Array, *rest: jax.Array | None) -> Any:
        """``fn(q, *rest)`` over groups of examples: each example's ``(heads, time, time)``
        arrays take ``heads·time²`` elements."""
        return _by_groups(fn, heads * q.shape[1] ** 2 * q.dtype.itemsize, q, *rest)

    def apply(params: AttentionParams, x: jax.Array | tuple) -> jax.Array:
        x, keep = split(x)
        q, k, v = project(params, x)
        o = by_groups(attend, q, k, v, keep)[..., :d].reshape(x.shape)
        return jnp.einsum("btd,de->bte", o, params.w_o) + params.b_o[None, None, :]

    def backward(
        params: AttentionParams, x: jax.Array | tuple, grad_y: jax.Array
    ) -> tuple[AttentionParams, jax.Array | tuple]:
        given = type(x) is tuple
        x, keep = split(x)
        check_grad_shape(name, grad_y, tuple(x.shape))
        batch, time, _ = x.shape
        q, k, v = project(params, x)
        out = by_groups(attend, q, k, v, keep)
        grad_w_o = jnp.einsum("btd,bte->de", out[..., :d].reshape(x.shape), grad_y)
        grad_b_o = jnp.sum(grad_y, axis=(0, 1))
        grad_o = jnp.einsum("bte,de->btd", grad_y, params.w_o).reshape(batch, time, heads, d)
        grad_q, grad_k, grad_v = by_groups(attend_backward, q, k, v, keep, out, grad_o)
        grad_qkv = jnp.stack([grad_q, grad_k, grad_v], axis=2).reshape(batch, time, 3 * dim)
        grad_w_qkv = jnp.einsum("btd,bte->de", x, grad_qkv)
        grad_b_qkv = jnp.sum(grad_qkv, axis=(0, 1))
        grad_x = jnp.einsum("bte,de->btd", grad_qkv, params.w_qkv)
        grads = AttentionParams(grad_w_qkv, grad_b_qkv, grad_w_o, grad_b_o)
        return grads, ((grad_x, None) if given else grad_x)

    penalty = weight_penalty(caller, regularizer, ("w_qkv", "w_o"))
    return Layer(init_params, apply, backward, name=name, penalty=penalty)
