"""The candidate implementations of `conv2d`'s three products, each a pure function of arrays.

Every candidate computes exactly the same mathematical quantity (checked against ``jax.vjp``
in ``tests/test_conv_kernels.py``); they differ only in how XLA runs it. `conv2d` takes one
policy (`POLICIES`): one candidate per product, fixed or chosen by measurement
(`nnrs_jax.autotune`).

With ``xp`` the zero-padded input ``(B, Hp, Wp, C)``, ``W`` ``(kh, kw, C, O)``, strides
``(sh, sw)`` and output ``(B, H', W', O)``, ``view_ij = xp[:, i + sh·h, j + sw·w, :]``:

    forward   y      = Σ_ij view_ij · W[i, j]
    grad_w    dW[ij] = view_ijᵀ · dy
    grad_x    dxp    = Σ_ij place_ij(dy · W[i, j]ᵀ),   dx = dxp without its padding

- ``patches``: the ``kh·kw`` views side by side on the channel axis (the patch matrix ``P``,
  ``(B·H'·W', kh·kw·C)``), one product ``P·Wm``, ``Pᵀ·dy`` or ``dy·Wmᵀ`` (Chellapilla et al.
  2006);
- ``shifted``: ``kh·kw`` products, one per kernel position, summed or stacked: no patch
  matrix is built;
- ``xla``: XLA's own convolution, ``lax.conv_general_dilated`` (``dx`` as the transposed
  convolution of ``dy`` with the flipped kernel, ``dW`` as the correlation of ``xp`` with
  ``dy`` dilated by the stride; Dumoulin & Visin 2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "FORWARD",
    "GRAD_W",
    "GRAD_X",
    "POLICIES",
    "Geometry",
    "candidates",
    "default_policy",
    "pad_input",
    "scatter_windows",
    "window_views",
]


class Geometry(NamedTuple):
    """Everything static about one convolution: shapes are read from the arrays."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    out: tuple[int, int]


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


def pad_input(x: jax.Array, g: Geometry) -> jax.Array:
    """``xp``: ``x`` with the geometry's zeros around its height and width."""
    if g.pads == ((0, 0), (0, 0)):
        return x
    return jnp.pad(x, ((0, 0), *g.pads, (0, 0)))


def _views(x: jax.Array, g: Geometry) -> list[jax.Array]:
    return window_views(pad_input(x, g), g.kernel, g.stride, g.out)


_ROWS = (((3,), (0,)), ((), ()))  # (B, H', W', K)·(K, O) -> (B, H', W', O)


# ----------------------------------------------------------------------------- forward


def forward_patches(x: jax.Array, w: jax.Array, g: Geometry) -> jax.Array:
    """``y = P·Wm``: the patch matrix times the kernel as ``(kh·kw·C, O)``."""
    kh, kw, c, o = w.shape
    p = jnp.concatenate(_views(x, g), axis=-1)
    return lax.dot_general(p, w.reshape(kh * kw * c, o), _ROWS)


def forward_shifted(x: jax.Array, w: jax.Array, g: Geometry) -> jax.Array:
    """``y = Σ_ij view_ij·W[i, j]``; with one channel each term is a broadcast multiply."""
    kh, kw, c, o = w.shape
    wk = w.reshape(kh * kw, c, o)
    if c == 1:
        return sum(view * wk[k, 0][None, None, None, :] for k, view in enumerate(_views(x, g)))
    return sum(lax.dot_general(view, wk[k], _ROWS) for k, view in enumerate(_views(x, g)))


def forward_xla(x: jax.Array, w: jax.Array, g: Geometry) -> jax.Array:
    """XLA's convolution, NHWC input, HWIO kernel."""
    return lax.conv_general_dilated(
        x, w, g.stride, g.pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


# ----------------------------------------------------------------------------- grad_w


def _split_k(n: int) -> int:
    """Chunks for a ``dW`` product over ``n`` rows: 4 when they divide evenly."""
    return 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1


def grad_w_patches(x: jax.Array, grad_y: jax.Array, w_shape: tuple[int, ...], g: Geometry):
    """``dW = Pᵀ·dy``, as one batched product over a few row chunks of ``P`` and ``dy``, summed.

    XLA runs the chunked form as one batched product with the narrower operand transposed,
    where a single product would copy the wide patch matrix to a transposed layout first.
    With one input channel ``Pᵀ`` is the stacked views, ``(kh·kw, B·H'·W')``.
    """
    kh, kw, c, o = w_shape
    views = _views(x, g)
    if c == 1:
        return (jnp.stack(views).reshape(kh * kw, -1) @ grad_y.reshape(-1, o)).reshape(w_shape)
    p = jnp.concatenate(views, axis=-1)
    k = p.shape[-1]
    n = _split_k(p.shape[0] * p.shape[1] * p.shape[2])
    p, dy = p.reshape(n, -1, k), grad_y.reshape(n, -1, o)
    batched = (((1,), (1,)), ((0,), (0,)))
    if k <= o:
        grad = jnp.sum(lax.dot_general(p, dy, batched), axis=0)
    else:
        grad = jnp.sum(lax.dot_general(dy, p, batched), axis=0).T
    return grad.reshape(w_shape)


def grad_w_shifted(x: jax.Array, grad_y: jax.Array, w_shape: tuple[int, ...], g: Geometry):
    """``dW[i, j] = view_ijᵀ·dy``, one product per kernel position, stacked."""
    o = w_shape[-1]
    dy = grad_y.reshape(-1, o)
    parts = [view.reshape(dy.shape[0], -1).T @ dy for view in _views(x, g)]
    return jnp.stack(parts).reshape(w_shape)


def grad_w_xla(x: jax.Array, grad_y: jax.Array, w_shape: tuple[int, ...], g: Geometry):
    """``dW`` as XLA's convolution of ``xp`` (batch as the features) with ``dy`` as the kernel.

    ``dW[i, j, c, o] = Σ_{b,h,w} xp[b, i + sh·h, j + sw·w, c]·dy[b, h, w, o]``: a correlation of
    ``xp``, read with ``c`` as its batch and ``b`` as its features, with ``dy`` dilated by the
    stride; the result ``(C, kh', kw', O)`` is cut to the kernel (``kh' > kh`` when the stride
    skips the last rows) and transposed to HWIO.
    """
    kh, kw, _, _ = w_shape
    xp = pad_input(x, g)
    grad = lax.conv_general_dilated(
        xp,
        grad_y,
        window_strides=(1, 1),
        padding=((0, 0), (0, 0)),
        rhs_dilation=g.stride,
        dimension_numbers=("CHWN", "IHWO", "NHWC"),
    )
    return grad[:, :kh, :kw, :].transpose(1, 2, 0, 3)


# ----------------------------------------------------------------------------- grad_x


def scatter_windows(
    parts: list[jax.Array], kernel: tuple[int, int], stride: tuple[int, int], size: tuple[int, int]
) -> jax.Array:
    """The transpose of `window_views`: ``Σ_ij`` each part added back at its window offset.

    ``parts`` are ``kh·kw`` arrays ``(batch, H', W', C)``, row-major in (i, j), on a grid of
    ``size`` ``(H, W)``; each is placed with one ``lax.pad`` (interior zeros for the stride).
    """
    (_, kw), (sh, sw), (h, w) = kernel, stride, size
    zero = jnp.zeros((), parts[0].dtype)
    total = None
    for k, part in enumerate(parts):
        i, j = divmod(k, kw)
        ho, wo = part.shape[1], part.shape[2]
        rows = (i, h - i - sh * (ho - 1) - 1, sh - 1)
        cols = (j, w - j - sw * (wo - 1) - 1, sw - 1)
        placed = lax.pad(part, zero, ((0, 0, 0), rows, cols, (0, 0, 0)))
        total = placed if total is None else total + placed
    return total


def _place(parts: list[jax.Array], g: Geometry, size: tuple[int, int]) -> jax.Array:
    """``Σ_ij place_ij(part_ij)`` on the padded grid, then the padding cut away: ``dx``."""
    ((pt, pb), (pl, pr)) = g.pads
    padded = (size[0] + pt + pb, size[1] + pl + pr)
    total = scatter_windows(parts, g.kernel, g.stride, padded)
    return total[:, pt : pt + size[0], pl : pl + size[1], :]


def grad_x_patches(grad_y: jax.Array, w: jax.Array, x_shape: tuple[int, ...], g: Geometry):
    """``dP = dy·Wmᵀ`` ``(B, H', W', kh·kw·C)``, its ``kh·kw`` slices added back in place."""
    kh, kw, c, o = w.shape
    dp = lax.dot_general(grad_y, w.reshape(kh * kw * c, o), (((3,), (1,)), ((), ())))
    parts = [dp[..., k * c : (k + 1) * c] for k in range(kh * kw)]
    return _place(parts, g, x_shape[1:3])


def grad_x_shifted(grad_y: jax.Array, w: jax.Array, x_shape: tuple[int, ...], g: Geometry):
    """``dxp = Σ_ij place_ij(dy·W[i, j]ᵀ)``, one product per kernel position."""
    kh, kw, c, o = w.shape
    wk = w.reshape(kh * kw, c, o)
    parts = [lax.dot_general(grad_y, wk[k], (((3,), (1,)), ((), ()))) for k in range(kh * kw)]
    return _place(parts, g, x_shape[1:3])


def grad_x_xla(grad_y: jax.Array, w: jax.Array, x_shape: tuple[int, ...], g: Geometry):
    """The transposed convolution: ``dy`` dilated by the stride, with ``W`` flipped, I↔O."""
    kh, kw, _, _ = w.shape
    h, wd = x_shape[1], x_shape[2]
    (sh, sw), ((pt, _), (pl, _)), (ho, wo) = g.stride, g.pads, g.out
    flipped = jnp.flip(w, axis=(0, 1)).transpose(0, 1, 3, 2)
    return lax.conv_general_dilated(
        grad_y,
        flipped,
        window_strides=(1, 1),
        padding=(
            (kh - 1 - pt, h + pt - sh * (ho - 1) - 1),
            (kw - 1 - pl, wd + pl - sw * (wo - 1) - 1),
        ),
        lhs_dilation=g.stride,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


FORWARD: dict[str, Callable[..., jax.Array]] = {
    "patches": forward_patches,
    "shifted": forward_shifted,
    "xla": forward_xla,
}
GRAD_W: dict[str, Callable[..., jax.Array]] = {
    "patches": grad_w_patches,
    "shifted": grad_w_shifted,
    "xla": grad_w_xla,
}
GRAD_X: dict[str, Callable[..., jax.Array]] = {
    "patches": grad_x_patches,
    "shifted": grad_x_shifted,
    "xla": grad_x_xla,
}

POLICIES: dict[str, tuple[str, str, str]] = {
    "patches": ("patches", "patches", "xla"),
    "shifted": ("shifted", "shifted", "shifted"),
    "xla": ("xla", "xla", "xla"),
    "xla_forward": ("xla", "shifted", "xla"),
}
"""`conv2d`'s implementations: policy -> the candidates for (forward, grad_w, grad_x).

``patches`` is the CPU default, the fastest measured in a CNN's training step on a 2-core CPU
(one patch matrix, shared by the forward product and ``dW``, and XLA's transposed
convolution for ``dx``); ``xla`` is XLA's convolution throughout (cuDNN on a GPU) and the
default on every other backend; ``shifted`` builds no patch matrix; ``xla_forward`` mixes
them.
"""


def default_policy() -> str:
    """``"patches"`` on the CPU backend, ``"xla"`` (XLA's own convolution) on GPUs and TPUs.

    A measured policy must beat this one to be chosen, so on a GPU the choice is never slower
    than XLA's convolution with cuDNN.
    """
    return "patches" if jax.default_backend() == "cpu" else "xla"


def candidates(policy: str, in_channels: int) -> tuple[str, str, str]:
    """The (forward, grad_w, grad_x) candidates of ``policy``.

    With one input channel the patch matrix has ``kh·kw`` columns, too thin for a matrix
    kernel, so the ``patches`` forward is the shifted multiply-adds there.
    """
    forward, grad_w, grad_x = POLICIES[policy]
    if in_channels == 1 and forward == "patches":
        forward = "shifted"
    return forward, grad_w, grad_x
