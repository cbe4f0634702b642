"""The 2-D convolution layer (NHWC): a patch-matrix product forward, a hand-written backward."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax import autotune, initializers
from nnrs_jax._validate import check_int
from nnrs_jax.layers import conv_kernels
from nnrs_jax.layers._checks import (
    check_grad_shape,
    check_image,
    floating_input,
    pair,
    window_output_size,
)
from nnrs_jax.layers.base import Layer, layer_factory, weight_penalty
from nnrs_jax.layers.conv_kernels import Geometry
from nnrs_jax.regularizers import Regularizer

__all__ = ["Conv2dParams", "conv2d"]

POLICY_NAMES = tuple(conv_kernels.POLICIES)


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
    impl: str = "auto",
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

    Each product has several implementations (`nnrs_jax.layers.conv_kernels`), all computing
    the same values: the patch matrix and one product, ``kh·kw`` products of shifted views, or
    XLA's convolution (``dx`` as the transposed convolution of ``dy`` with ``W`` flipped in
    space, its channel axes swapped; ``dW`` as the correlation of ``x`` with ``dy``). A
    *policy* picks one per product. The CPU default, ``"patches"``, was the fastest in a CNN's
    training step on a 2-core CPU: one patch matrix, shared by ``y`` and ``dW`` (its ``dW``
    product cut into a few row chunks), and XLA's transposed convolution for ``dx``; with one
    input channel the forward is ``kh·kw`` multiply-adds of shifted views. With
    ``impl="auto"`` the policy is the one measured for this layer's shapes on this host
    (`nnrs_jax.autotune`: `fit` times every policy in the real training step, once per host,
    and keeps the winner on disk), else the default: ``"patches"`` on CPU, XLA's convolution
    (``"xla"``) on GPUs and TPUs. Under ``jit`` XLA drops the ``dx`` of a
    first layer, whose input needs no gradient.

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
        impl: ``"auto"`` (default: measured per host, see above), or a fixed policy:
            ``"patches"``, ``"shifted"``, ``"xla"`` or ``"xla_forward"``
            (`nnrs_jax.layers.conv_kernels.POLICIES`).

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
    if impl != "auto" and impl not in conv_kernels.POLICIES:
        raise ValueError(f"conv2d: impl must be 'auto' or one of {POLICY_NAMES}, got {impl!r}")
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

    def geometry(x: jax.Array) -> Geometry:
        """Zero padding per spatial axis and the output size, checked at trace time."""
        check_image(name, x, channels=in_channels)
        _, h, w, _ = x.shape
        pads = (_pads(pad_mode, h, kh, sh, 0), _pads(pad_mode, w, kw, sw, 1))
        out = (
            window_output_size(name, "height", h + sum(pads[0]), kh, sh, "kernel"),
            window_output_size(name, "width", w + sum(pads[1]), kw, sw, "kernel"),
        )
        return Geometry(kernel, strides, pads, out)

    def same_dtype(params: Conv2dParams, arg: str, a: jax.Array) -> None:
        if a.dtype != params.w.dtype:
            raise TypeError(
                f"{name}: {arg} must have the parameters' dtype {params.w.dtype}, got {a.dtype}"
            )

    def implementation(x: jax.Array, g: Geometry) -> tuple[str, str, str]:
        """(forward, grad_w, grad_x): ``impl``'s, or the measured policy of this site."""
        policy = impl
        if impl == "auto":
            signature = f"{x.shape[1:]} {x.dtype} -> {out_channels}, {g}"
            default = conv_kernels.default_policy()
            policy = autotune.policy("conv2d", signature, POLICY_NAMES, default)
        return conv_kernels.candidates(policy, in_channels)

    def apply(params: Conv2dParams, x: jax.Array) -> jax.Array:
        x = floating_input(name, x)
        g = geometry(x)
        same_dtype(params, "x", x)
        forward = implementation(x, g)[0]
        y = conv_kernels.FORWARD[forward](x, params.w, g)
        return y + params.b[None, None, None, :]

    def backward(
        params: Conv2dParams, x: jax.Array, grad_y: jax.Array
    ) -> tuple[Conv2dParams, jax.Array]:
        x = floating_input(name, x)
        g = geometry(x)
        check_grad_shape(name, grad_y, (x.shape[0], *g.out, out_channels))
        same_dtype(params, "x", x)
        same_dtype(params, "grad_y", grad_y)
        _, for_w, for_x = implementation(x, g)
        grad_w = conv_kernels.GRAD_W[for_w](x, grad_y, params.w.shape, g)
        grad_x = conv_kernels.GRAD_X[for_x](grad_y, params.w, x.shape, g)
        grad_b = jnp.sum(grad_y, axis=(0, 1, 2))
        return Conv2dParams(grad_w, grad_b), grad_x

    return Layer(init_params, apply, backward, name=name, penalty=penalty)
