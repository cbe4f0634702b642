"""Max and average pooling over 2-D windows, NHWC, valid padding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nnrs_jax.layers._checks import (
    check_grad_shape,
    check_image,
    floating_input,
    pair,
    window_output_size,
)
from nnrs_jax.layers.base import Layer, layer_factory, no_params
from nnrs_jax.layers.conv_kernels import scatter_windows, window_views

__all__ = ["avg_pool", "max_pool"]

Pair = tuple[int, int]


def _first_maxima(views: list[jax.Array], y: jax.Array) -> list[jax.Array]:
    """For each window position (row-major), whether it holds the window's first maximum."""
    taken = None
    masks = []
    for view in views:
        hit = view == y
        masks.append(hit if taken is None else hit & ~taken)
        taken = hit if taken is None else taken | hit
    return masks


def _tiles(x: jax.Array, window: Pair, out: Pair) -> jax.Array:
    """``x`` cut to whole windows and viewed as ``(batch, H', kh, W', kw, C)`` (a reshape)."""
    (kh, kw), (ho, wo) = window, out
    b, _, _, c = x.shape
    return x[:, : ho * kh, : wo * kw, :].reshape(b, ho, kh, wo, kw, c)


def _untile(tiles: jax.Array, size: Pair) -> jax.Array:
    """The transpose of `_tiles`: ``(batch, H', kh, W', kw, C)`` back to ``(batch, H, W, C)``."""
    b, ho, kh, wo, kw, c = tiles.shape
    rows, cols = size[0] - ho * kh, size[1] - wo * kw
    full = tiles.reshape(b, ho * kh, wo * kw, c)
    return jnp.pad(full, ((0, 0), (0, rows), (0, cols), (0, 0))) if rows or cols else full


def _pool(kind: str, window: int | Pair, stride: int | Pair | None) -> Layer:
    win = pair(kind, "window", window, low=1)
    strides = win if stride is None else pair(kind, "stride", stride, low=1)
    (kh, kw), (sh, sw) = win, strides
    name = f"{kind}({kh}x{kw}" + ("" if strides == win else f", stride=({sh}, {sw})") + ")"
    # Non-overlapping windows (the common 2×2, stride 2) are a reshape and a reduction: in a
    # CNN's training step on CPU this beat the strided views of the general path, and both
    # beat XLA's select-and-scatter (autodiff of lax.reduce_window) by an order of magnitude.
    tiled = strides == win

    def geometry(x: jax.Array) -> tuple[Pair, Pair]:
        check_image(name, x)
        _, h, w, _ = x.shape
        out = (
            window_output_size(name, "height", h, kh, sh, "window"),
            window_output_size(name, "width", w, kw, sw, "window"),
        )
        return (h, w), out

    def check_grad(x: jax.Array, grad_y: jax.Array, out: Pair) -> None:
        check_grad_shape(name, grad_y, (x.shape[0], *out, x.shape[-1]))

    if kind == "max_pool":

        def apply(params: tuple[()], x: jax.Array) -> jax.Array:
            x = floating_input(name, x)
            _, out = geometry(x)
            if tiled:
                return jnp.max(_tiles(x, win, out), axis=(2, 4))
            return functools.reduce(jnp.maximum, window_views(x, win, strides, out))

        def backward(
            params: tuple[()], x: jax.Array, grad_y: jax.Array
        ) -> tuple[tuple[()], jax.Array]:
            x = floating_input(name, x)
            size, out = geometry(x)
            check_grad(x, grad_y, out)
            y = apply(params, x)
            zero = jnp.zeros((), grad_y.dtype)
            if tiled:
                tiles = _tiles(x, win, out)
                views = [tiles[:, :, i, :, j, :] for i in range(kh) for j in range(kw)]
                parts = [jnp.where(m, grad_y, zero) for m in _first_maxima(views, y)]
                rows = [jnp.stack(parts[i * kw : (i + 1) * kw], axis=3) for i in range(kh)]
                return (), _untile(jnp.stack(rows, axis=2), size)
            views = window_views(x, win, strides, out)
            parts = [jnp.where(m, grad_y, zero) for m in _first_maxima(views, y)]
            return (), scatter_windows(parts, win, strides, size)

    else:
        scale = 1.0 / (kh * kw)

        def apply(params: tuple[()], x: jax.Array) -> jax.Array:
            x = floating_input(name, x)
            _, out = geometry(x)
            if tiled:
                return jnp.mean(_tiles(x, win, out), axis=(2, 4))
            return sum(window_views(x, win, strides, out)) * jnp.asarray(scale, x.dtype)

        def backward(
            params: tuple[()], x: jax.Array, grad_y: jax.Array
        ) -> tuple[tuple[()], jax.Array]:
            x = floating_input(name, x)
            size, out = geometry(x)
            check_grad(x, grad_y, out)
            share = grad_y * jnp.asarray(scale, grad_y.dtype)
            if tiled:
                b, _, _, c = x.shape
                tiles = jnp.broadcast_to(
                    share[:, :, None, :, None, :], (b, out[0], kh, out[1], kw, c)
                )
                return (), _untile(tiles, size)
            return (), scatter_windows([share] * (kh * kw), win, strides, size)

    return Layer(no_params, apply, backward, name=name)


@layer_factory
def max_pool(window: int | Pair, stride: int | Pair | None = None) -> Layer:
    """Max pooling: the largest value of each ``kh×kw`` window, per channel (NHWC, valid).

    ``x`` ``(batch, H, W, C)`` → ``y`` ``(batch, H', W', C)`` with ``H' = ⌊(H − kh) / s⌋ + 1``
    (rows and columns that fill no whole window are dropped)::

        y[b, h, w, c] = max_{i<kh, j<kw} x[b, s·h + i, s·w + j, c]

    Backward: each ``dy[b, h, w, c]`` goes, whole, to the position of its window's maximum;
    windows that overlap add up. **Ties**: the first maximum in row-major window order (smallest
    ``i``, then smallest ``j``) gets all of it, the others nothing — as PyTorch and XLA's
    select-and-scatter do; the gradient is a valid subgradient and its sum is preserved.

    With ``stride == window`` (the default) the windows tile the input and the pooling is a
    reshape and a max, its backward a mask of the maxima; other strides use ``kh·kw`` strided
    views and scatter their gradients back.

    Args:
        window: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; defaults to ``window`` (non-overlapping windows).

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> nj.max_pool(2).apply((), x)[0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    return _pool("max_pool", window, stride)


@layer_factory
def avg_pool(window: int | Pair, stride: int | Pair | None = None) -> Layer:
    """Average pooling: the mean of each ``kh×kw`` window, per channel (NHWC, valid).

    ``x`` ``(batch, H, W, C)`` → ``y`` ``(batch, H', W', C)``, ``H' = ⌊(H − kh) / s⌋ + 1``::

        y[b, h, w, c] = (1 / (kh·kw)) · Σ_{i<kh, j<kw} x[b, s·h + i, s·w + j, c]

    Backward: ``dx[b, s·h + i, s·w + j, c] += dy[b, h, w, c] / (kh·kw)`` for every window
    position (overlapping windows add up; dropped rows and columns get zero).

    Args:
        window: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; defaults to ``window`` (non-overlapping windows).

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> nj.avg_pool(2).apply((), x)[0, :, :, 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    return _pool("avg_pool", window, stride)
