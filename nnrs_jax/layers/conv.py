"""The 2-D convolution layer (NHWC): a patch-matrix product forward, a hand-written backward."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nnrs_jax import initializers
from nnrs_jax._validate import check_int
from nnrs_jax.layers._checks import (
    check_grad_shape,
    check_image,
    floating_input,
    pair,
    window_output_size,
)
from nnrs_jax.layers.base import Layer, layer_factory, weight_penalty
from nnrs_jax.regularizers import Regularizer

__all__ = ["Conv2dParams", "conv2d"]


class Conv2dParams(NamedTuple):
    """Parameters of `conv2d`: kernel ``w`` ``(kh, kw, in, out)`` (HWIO), bias ``b`` ``(out,)``."""

    w: jax.Array
    b: jax.Array


def _padding(name: str, padding: str | int | tuple[int, int]) -> str | tuple[int, int]:
    """``"valid"``, ``"same"`` or ``(ph, pw)`` zeros on each side of the height and width."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(
                f"{name}: padding must be 'valid', 'same', an int or a pair of ints, "
                f"got {padding!r}"
            )
        return padding.lower()
    return pair(name, "padding", padding, low=0)


def _pads(padding: str | tuple[int, int], size: int, k: int, s: int, axis: int) -> tuple[int, int]:
    """Zeros added before and after one spatial axis of length ``size``."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        # As TensorFlow and XLA: out = ceil(size / s), the odd zero goes after.
        total = max((-(-size // s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2
    return padding[axis], padding[axis]


def window_views(
    x: jax.Array, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
) -> list[jax.Array]:
    """The ``kh·kw`` shifted, strided views ``x[:, i + s·h, j + s·w, :]``, row-major in (i, j)."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out
    b, _, _, c = x.shape
    return [
        lax.slice(
            x, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1)
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _split_k(n: int) -> int:
    """Chunks for a ``dW`` product over ``n`` rows: 4 when they divide evenly (see `conv2d`)."""
    return 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1


def _weight_grad(p: jax.Array, grad_y: jax.Array) -> jax.Array:
    """``Pᵀ·dy`` for ``p`` ``(B, H', W', K)`` and ``grad_y`` ``(B, H', W', O)``: ``(K, O)``.

    The rows are cut into a few chunks, multiplied as one batched product and summed: XLA then
    runs one batched product with the narrower operand transposed (the fastest form measured
    on CPU), where a single product would be rewritten into a slower one or copy the wide
    patch matrix to a transposed layout first.
    """
    k, o = p.shape[-1], grad_y.shape[-1]
    n = _split_k(p.shape[0] * p.shape[1] * p.shape[2])
    p, grad_y = p.reshape(n, -1, k), grad_y.reshape(n, -1, o)
    batched = (((1,), (1,)), ((0,), (0,)))
    if k <= o:
        return jnp.sum(lax.dot_general(p, grad_y, batched), axis=0)
    return jnp.sum(lax.dot_general(grad_y, p, batched), axis=0).T


@layer_factory
def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] = "valid",
    *,
    init: str | initializers.Initializer = "he",
    regularizer: Regularizer | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """2-D convolution (cross-correlation, as in every deep-learning library), NHWC.

    Input ``x`` ``(batch, H, W, in)``, kernel ``W`` ``(kh, kw, in, out)`` (HWIO), bias ``b``
    ``(out,)``, output ``y`` ``(batch, H', W', out)``. Channels last (NHWC) because XLA's CPU
    backend prefers it, and because then the patch matrix is the ``kh·kw`` shifted views of
    ``x`` laid side by side on the channel axis followed by a plain reshape: no large array is
    ever transposed, forward or backward.

    Forward, with ``xp`` the zero-padded input and strides ``s``::

        P[b, h, w, (i, j, c)] = xp[b, s·h + i, s·w + j, c]       patch matrix (B·H'·W', kh·kw·in)
        y = P·Wm + b                                               Wm = W as (kh·kw·in, out)

    Backward, given ``dy`` ``(batch, H', W', out)``::

        dW = Pᵀ·dy            the correlation of the input with dy, as (kh, kw, in, out)
        db = Σ_{b,h,w} dy
        dx[b, u, v, c] = Σ_{h,w,i,j : s·h+i = u+pt, s·w+j = v+pl} dy[b, h, w, :]·W[i, j, c, :]

    ``dx`` is the transposed convolution of ``dy`` with ``W``: ``dy`` dilated by the stride
    (``s − 1`` zeros between entries), zero-padded by ``kh − 1 − pt`` rows before (and as many
    after as give back ``H`` rows; likewise for the width), convolved with ``W`` flipped in
    space and with its channel axes swapped — a forward-type convolution, which
    ``lax.conv_general_dilated`` runs on CPU without any patch matrix. ``dW`` is one batched
    matrix product over a few row chunks of ``P`` and ``dy``, summed. With one input channel
    the forward is ``kh·kw`` multiply-adds of shifted views (a product with ``kh·kw`` columns
    is too thin for a matrix kernel) and ``Pᵀ`` is those views stacked, so no patch matrix is
    built. Each choice was the fastest of the variants measured on a 2-core CPU, in a training
    step; under ``jit`` XLA drops the ``dx`` of a first layer, whose input needs no gradient.

    References: Chellapilla et al. 2006, "High performance convolutional neural networks for
    document processing" (the patch matrix); Dumoulin & Visin 2016, "A guide to convolution
    arithmetic for deep learning" (transposed convolutions).

    Output size per spatial axis: ``"valid"``: ``⌊(H − kh) / s⌋ + 1``; ``"same"``: ``⌈H / s⌉``
    (the zeros split evenly, the odd one after, as XLA and TensorFlow do); an int ``p`` or a
    pair ``(ph, pw)``: ``p`` zeros on both sides, ``⌊(H + 2p − kh) / s⌋ + 1``.

    Args:
        in_channels: the input channels, a positive int.
        out_channels: the output channels (filters), a positive int.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``, default 1.
        padding: ``"valid"`` (default), ``"same"``, an int or a pair of ints ``>= 0``.
        init: ``"he"`` (default), ``"lecun"``, ``"glorot"`` or a function of
            `nnrs_jax.initializers`, with fan-in ``kh·kw·in`` and fan-out ``kh·kw·out``;
            biases start at zero.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on ``W`` (never on ``b``).
        dtype: dtype of the parameters, float32 by default.

    Raises:
        TypeError, ValueError: a bad argument here; at trace time, an input that is not a
            floating ``(batch, H, W, in_channels)`` array or is smaller than the kernel.

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> layer = nj.conv2d(1, 8, 3, padding="same")
        >>> params = layer.init(jax.random.key(0))
        >>> params.w.shape, params.b.shape
        ((3, 3, 1, 8), (8,))
        >>> layer.apply(params, jnp.zeros((2, 28, 28, 1))).shape
        (2, 28, 28, 8)
    """
    in_channels = check_int("conv2d", "in_channels", in_channels, low=1)
    out_channels = check_int("conv2d", "out_channels", out_channels, low=1)
    kernel = pair("conv2d", "kernel_size", kernel_size, low=1)
    strides = pair("conv2d", "stride", stride, low=1)
    pad_mode = _padding("conv2d", padding)
    penalty = weight_penalty("conv2d", regularizer)
    init_fn = initializers.resolve(init, caller="conv2d")
    (kh, kw), (sh, sw) = kernel, strides
    name = f"conv2d({in_channels}, {out_channels}, {kh}x{kw}"
    if strides != (1, 1):
        name += f", stride={sh}" if sh == sw else f", stride=({sh}, {sw})"
    if pad_mode != "valid":
        name += f", padding={pad_mode!r}"
    name += ")"
    k_in = kh * kw * in_channels

    def init_params(key: jax.Array) -> Conv2dParams:
        # The initializers read fan-in and fan-out from a (fan_in, fan_out) shape, so a
        # (kh·kw·in, kh·kw·out) matrix is drawn and its first `out` columns kept: entries
        # with exactly the variance the right fans give, for any initializer.
        w = init_fn(key, (k_in, kh * kw * out_channels), dtype)[:, :out_channels]
        w = w.reshape(kh, kw, in_channels, out_channels)
        return Conv2dParams(w=w, b=jnp.zeros((out_channels,), dtype))

    def geometry(x: jax.Array) -> tuple[tuple[tuple[int, int], tuple[int, int]], tuple[int, int]]:
        """Zero padding per spatial axis and the output size, checked at trace time."""
        check_image(name, x, channels=in_channels)
        _, h, w, _ = x.shape
        pads = (_pads(pad_mode, h, kh, sh, 0), _pads(pad_mode, w, kw, sw, 1))
        out = (
            window_output_size(name, "height", h + sum(pads[0]), kh, sh, "kernel"),
            window_output_size(name, "width", w + sum(pads[1]), kw, sw, "kernel"),
        )
        return pads, out

    def views(x: jax.Array, pads, out) -> list[jax.Array]:
        if pads != ((0, 0), (0, 0)):
            x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        return window_views(x, kernel, strides, out)

    def same_dtype(params: Conv2dParams, arg: str, a: jax.Array) -> None:
        if a.dtype != params.w.dtype:
            raise TypeError(
                f"{name}: {arg} must have the parameters' dtype {params.w.dtype}, got {a.dtype}"
            )

    def apply(params: Conv2dParams, x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        pads, out = geometry(x)
        same_dtype(params, "x", x)
        shifted = views(x, pads, out)
        if in_channels == 1:
            w = params.w.reshape(kh * kw, out_channels)
            y = sum(view * w[k][None, None, None, :] for k, view in enumerate(shifted))
        else:
            p = jnp.concatenate(shifted, axis=-1)
            y = lax.dot_general(p, params.w.reshape(k_in, out_channels), (((3,), (0,)), ((), ())))
        return y + params.b[None, None, None, :]

    def backward(
        params: Conv2dParams, x: jax.Array, grad_y: jax.Array
    ) -> tuple[Conv2dParams, jax.Array]:
        x = floating_input(name, x)
        pads, out = geometry(x)
        b, h, w, _ = x.shape
        check_grad_shape(name, grad_y, (b, *out, out_channels))
        same_dtype(params, "x", x)
        same_dtype(params, "grad_y", grad_y)
        shifted = views(x, pads, out)
        if in_channels == 1:
            p_t = jnp.stack(shifted).reshape(kh * kw, -1)
            grad_w = p_t @ grad_y.reshape(-1, out_channels)
        else:
            grad_w = _weight_grad(jnp.concatenate(shifted, axis=-1), grad_y)
        grad_b = jnp.sum(grad_y, axis=(0, 1, 2))
        flipped = jnp.flip(params.w, axis=(0, 1)).transpose(0, 1, 3, 2)
        (pt, _), (pl, _) = pads
        grad_x = lax.conv_general_dilated(
            grad_y,
            flipped,
            window_strides=(1, 1),
            padding=(
                (kh - 1 - pt, h + pt - sh * (out[0] - 1) - 1),
                (kw - 1 - pl, w + pl - sw * (out[1] - 1) - 1),
            ),
            lhs_dilation=strides,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return Conv2dParams(grad_w.reshape(params.w.shape), grad_b), grad_x

    return Layer(init_params, apply, backward, name=name, penalty=penalty)
