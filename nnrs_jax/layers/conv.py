"""The 2-D convolution layer, NHWC, written as matrix products over a patch matrix."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nnrs_jax import initializers
from nnrs_jax._validate import check_int
from nnrs_jax.layers._checks import (
    check_image,
    check_grad_shape,
    floating_input,
    pair,
    window_output_size,
)
from nnrs_jax.layers.base import Layer, no_penalty
from nnrs_jax.regularizers import Regularizer

__all__ = ["Conv2dParams", "conv2d"]


class Conv2dParams(NamedTuple):
    """Parameters of `conv2d`: kernel ``w`` ``(kh, kw, in, out)`` (HWIO) and bias ``b`` ``(out,)``."""

    w: jax.Array
    b: jax.Array


def _padding(
    name: str, padding: str | int | tuple[int, int], kernel: tuple[int, int]
) -> str | tuple[int, int]:
    """``"valid"``, ``"same"`` or ``(ph, pw)`` zeros on each side of the height and width."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise ValueError(
                f"{name}: padding must be 'valid', 'same', an int or a pair of ints, "
                f"got {padding!r}"
            )
        return padding.lower()
    return pair(name, "padding", padding, low=0)


def _pads(
    padding: str | tuple[int, int], size: int, k: int, s: int, axis: int
) -> tuple[int, int]:
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
        lax.slice(x, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]


def scatter_windows(
    parts: list[jax.Array],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    size: tuple[int, int],
) -> jax.Array:
    """The transpose of `window_views`: ``Σ_ij`` each part scattered back to its window offset.

    Each part is placed with one ``lax.pad`` (interior zeros for the stride); the input's own
    zero padding is cut off by negative edge padding, so nothing of it is materialised.
    """
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (h, w) = kernel, stride, pads, size
    total = None
    for (i, j), part in zip(((i, j) for i in range(kh) for j in range(kw)), parts):
        ho, wo = part.shape[1], part.shape[2]
        rows = (i - pt, h + pt + pb - i - sh * (ho - 1) - 1 - pb, sh - 1)
        cols = (j - pl, w + pl + pr - j - sw * (wo - 1) - 1 - pr, sw - 1)
        placed = lax.pad(part, jnp.zeros((), part.dtype), ((0, 0, 0), rows, cols, (0, 0, 0)))
        total = placed if total is None else total + placed
    return total


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
    ``(out,)``, output ``y`` ``(batch, H', W', out)``. NHWC because XLA's CPU backend prefers
    channels-last, and because with the channels last the patch matrix is the ``kh·kw`` shifted
    views of ``x`` laid side by side on the channel axis, then a plain reshape — no transpose
    of a large array anywhere, forward or backward.

    Forward, with ``xp`` the zero-padded input and stride ``s``::

        P[b, h, w, (i, j, c)] = xp[b, s·h + i, s·w + j, c]      patch matrix (B·H'·W', kh·kw·in)
        y = P·Wm + b                                              Wm = W reshaped (kh·kw·in, out)

    Backward, given ``dy`` ``(batch, H', W', out)`` (``dym`` its ``(B·H'·W', out)`` view)::

        dW = Pᵀ·dym        the correlation of the input with dy, reshaped to (kh, kw, in, out)
        db = Σ_{b,h,w} dy
        dP = dym·Wmᵀ        (B·H'·W', kh·kw·in)
        dx[b, s·h + i − pt, s·w + j − pl, c] += dP[b, h, w, (i, j, c)]

    The last line, the transposed convolution of ``dy`` with ``W``, adds each of the ``kh·kw``
    column blocks of ``dP`` back at its window offset (one ``lax.pad`` each, summed in one
    fused loop); entries that fall in the padding are dropped. So a step costs three matrix
    products per layer, each as large as the forward one; XLA drops the ``dx`` of a first layer
    whose input gradient nobody uses. On CPU this beats ``lax.conv_general_dilated``, whose
    backward (especially inside ``lax.scan``) is several times slower than these products.

    Output size per spatial axis: ``"valid"``: ``⌊(H − kh) / s⌋ + 1``; ``"same"``: ``⌈H / s⌉``
    (zeros split evenly, the odd one after, as XLA and TensorFlow); an int ``p`` or a pair:
    ``p`` zeros on both sides, ``⌊(H + 2p − kh) / s⌋ + 1``.

    Args:
        in_channels, out_channels: positive sizes.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``, default 1.
        padding: ``"valid"`` (default), ``"same"``, an int or a pair of ints ``>= 0``.
        init: ``"he"`` (default), ``"lecun"``, ``"glorot"`` or a function of
            `nnrs_jax.initializers`, with fan-in ``kh·kw·in`` and fan-out ``kh·kw·out``;
            biases start at zero.
        regularizer: an `l1`, `l2` or `elastic_net` penalty on ``W`` (never on ``b``).
        dtype: dtype of the parameters, float32 by default.

    Example:
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
    pad_mode = _padding("conv2d", padding, kernel)
    if regularizer is not None and not isinstance(regularizer, Regularizer):
        raise TypeError(
            f"conv2d: regularizer must be nj.l1/l2/elastic_net(...) or None, got {regularizer!r}"
        )
    init_fn = initializers.resolve(init)
    (kh, kw), (sh, sw) = kernel, strides
    name = f"conv2d({in_channels}, {out_channels}, {kh}x{kw}"
    name += (f", stride={sh}" if sh == sw else f", stride=({sh}, {sw})") if strides != (1, 1) else ""
    name += "" if pad_mode == "valid" else f", padding={padding!r}"
    name += ")"
    k_in, k_out = kh * kw * in_channels, kh * kw * out_channels

    def init_params(key: jax.Array) -> Conv2dParams:
        # The initializers read fan-in and fan-out from a (fan_in, fan_out) shape.
        w = init_fn(key, (k_in, k_out), dtype)[:, :out_channels]
        return Conv2dParams(w=w.reshape(kh, kw, in_channels, out_channels), b=jnp.zeros((out_channels,), dtype))

    def geometry(x: jax.Array):
        """Padding per axis and output size, checked against the input at trace time."""
        check_image(name, x, channels=in_channels)
        _, h, w, _ = x.shape
        pads = (_pads(pad_mode, h, kh, sh, 0), _pads(pad_mode, w, kw, sw, 1))
        out = (
            window_output_size(name, "height", h + sum(pads[0]), kh, sh, "kernel"),
            window_output_size(name, "width", w + sum(pads[1]), kw, sw, "kernel"),
        )
        return pads, out

    def patches(x: jax.Array, pads, out) -> jax.Array:
        if pads != ((0, 0), (0, 0)):
            x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        return jnp.concatenate(window_views(x, kernel, strides, out), axis=-1)

    def apply(params: Conv2dParams, x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        pads, out = geometry(x)
        p = patches(x, pads, out)
        y = lax.dot_general(p, params.w.reshape(k_in, out_channels), (((3,), (0,)), ((), ())))
        return y + params.b

    def backward(
        params: Conv2dParams, x: jax.Array, grad_y: jax.Array
    ) -> tuple[Conv2dParams, jax.Array]:
        x = floating_input(name, x)
        pads, out = geometry(x)
        b, h, w, _ = x.shape
        check_grad_shape(name, grad_y, (b, *out, out_channels))
        p = patches(x, pads, out)
        grad_w = lax.dot_general(p, grad_y, (((0, 1, 2), (0, 1, 2)), ((), ())))
        grad_b = jnp.sum(grad_y, axis=(0, 1, 2))
        grad_p = lax.dot_general(
            grad_y, params.w.reshape(k_in, out_channels), (((3,), (1,)), ((), ()))
        )
        parts = jnp.split(grad_p, kh * kw, axis=-1)
        grad_x = scatter_windows(parts, kernel, strides, pads, (h, w))
        return Conv2dParams(grad_w.reshape(params.w.shape), grad_b), grad_x

    if regularizer is None:
        penalty = no_penalty
    else:

        def penalty(params: Conv2dParams) -> tuple[jax.Array, Conv2dParams]:
            return regularizer.value(params.w), Conv2dParams(
                regularizer.grad(params.w), jnp.zeros_like(params.b)
            )

    return Layer(init_params, apply, backward, penalty, name)
