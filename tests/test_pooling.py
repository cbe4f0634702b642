"""max_pool and avg_pool: forward against lax.reduce_window, the hand-written backward against
jax.vjp (float64 and float32, under jit, vmap and lax.scan), the tie rule, bad arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err
from helpers import vjp_of_apply as _vjp
from jax import lax

import nnrs_jax as nj

POOLS = {"max_pool": nj.max_pool, "avg_pool": nj.avg_pool}

# (window, stride, input (H, W)): tiled (stride = window) with and without leftover rows and
# columns, then overlapping and gapped windows, which take the general path.
CASES = {
    "2x2": (2, None, (8, 6)),
    "2x2_leftover": (2, None, (7, 9)),
    "3x2_tiled": ((3, 2), None, (7, 5)),
    "3x3_stride2_overlap": (3, 2, (9, 8)),
    "2x3_stride_1x2": ((2, 3), (1, 2), (6, 7)),
    "2x2_stride3_gaps": (2, 3, (8, 8)),
    "window_equals_input": ((4, 3), 1, (4, 3)),
}


def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _reference(kind: str, case: str):
    window, stride, _ = CASES[case]
    win = _pairs(window)
    strides = win if stride is None else _pairs(stride)
    dims, steps = (1, *win, 1), (1, *strides, 1)

    def forward(params, x):
        if kind == "max_pool":
            return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, "VALID")
        total = lax.reduce_window(x, 0.0, lax.add, dims, steps, "VALID")
        return total / (win[0] * win[1])

    return forward


def _case(kind: str, case: str, dtype, seed: int = 0, batch: int = 3):
    window, stride, (h, w) = CASES[case]
    layer = POOLS[kind](window, stride)
    rng = np.random.default_rng(seed)
    # Continuous random values: no ties, where autodiff of a max would split the gradient.
    x = jnp.asarray(rng.normal(size=(batch, h, w, 4)), dtype)
    y = jax.eval_shape(layer.apply, (), x)
    dy = jnp.asarray(rng.normal(size=y.shape), dtype)
    return layer, x, dy


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", POOLS)
def test_forward_matches_reduce_window(kind, case, dtype):
    layer, x, _ = _case(kind, case, dtype)
    y = jax.jit(layer.apply)((), x)
    want = jax.jit(_reference(kind, case))((), x)
    assert y.shape == want.shape and y.dtype == dtype
    assert rel_err(y, want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", POOLS)
def test_backward_matches_vjp(kind, case, dtype):
    layer, x, dy = _case(kind, case, dtype, seed=1)
    grads = jax.jit(layer.backward)((), x, dy)
    assert grads[0] == () and grads[1].shape == x.shape and grads[1].dtype == dtype
    # Against autodiff of the layer's own forward and of the independent reduce_window forward.
    report = nj.check_layer(layer, x, key=jax.random.key(1), rtol=TOL[dtype])
    assert report.ok, str(report)
    assert rel_err(grads, _vjp(_reference(kind, case), x, dy)) <= TOL[dtype]


@pytest.mark.parametrize("case", ["2x2_leftover", "3x3_stride2_overlap"])
@pytest.mark.parametrize("kind", POOLS)
def test_backward_under_jit_vmap_and_scan(kind, case):
    layer, x, dy = _case(kind, case, jnp.float64, seed=2)
    xs = jnp.stack([x, 0.5 * x - 1.0, -x])
    dys = jnp.stack([dy, -dy, 2.0 * dy])
    check_vmap_and_scan(layer, (), xs, dys, lambda _, a, b: _vjp(layer.apply, a, b))


def _grad_x(layer: nj.Layer, x: np.ndarray) -> np.ndarray:
    x = jnp.asarray(x, jnp.float64)[None, :, :, None]
    y = layer.apply((), x)
    return np.asarray(layer.backward((), x, jnp.ones_like(y))[1][0, :, :, 0])


def test_max_pool_ties_go_to_the_first_maximum():
    """Row-major window order: the earliest of equal maxima gets the whole gradient."""
    x = np.array(
        [
            [1.0, 3.0, 5.0, 5.0],
            [3.0, 2.0, 5.0, 5.0],
            [0.0, 0.0, -1.0, 4.0],
            [0.0, 0.0, 4.0, 2.0],
        ]
    )
    want = np.array(
        [
            [0.0, 1.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(_grad_x(nj.max_pool(2), x), want)
    # The general path (overlapping 2x2 windows, stride 1) follows the same rule per window,
    # and the windows' gradients add up.
    overlapping = np.array(
        [
            [0.0, 1.0, 2.0, 0.0],
            [1.0, 0.0, 2.0, 0.0],
            [1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(_grad_x(nj.max_pool(2, 1), x), overlapping)


@pytest.mark.parametrize("stride", [None, 1])
def test_max_pool_constant_input_keeps_the_gradient_sum(stride):
    layer = nj.max_pool(3, stride)
    x = jnp.zeros((2, 6, 6, 3), jnp.float64)
    y = layer.apply((), x)
    dy = jnp.asarray(np.random.default_rng(0).normal(size=y.shape))
    grad_x = np.asarray(layer.backward((), x, dy)[1])
    np.testing.assert_allclose(grad_x.sum(axis=(1, 2)), np.asarray(dy).sum(axis=(1, 2)))
    # Every window's whole gradient lands on its top-left corner.
    step = 3 if stride is None else 1
    corners = np.zeros_like(grad_x)
    corners[:, : y.shape[1] * step : step, : y.shape[2] * step : step] = 1.0
    assert np.all(grad_x[corners == 0.0] == 0.0)


def test_values_and_names():
    x = jnp.arange(16.0, dtype=jnp.float32).reshape(1, 4, 4, 1)
    assert nj.max_pool(2).apply((), x)[0, :, :, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert nj.avg_pool(2).apply((), x)[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert nj.max_pool(3, 1).apply((), x)[0, :, :, 0].tolist() == [[10.0, 11.0], [14.0, 15.0]]
    assert nj.max_pool(2).name == "max_pool(2x2)"
    assert nj.avg_pool((3, 2), (1, 2)).name == "avg_pool(3x2, stride=(1, 2))"
    assert nj.max_pool(2).init(jax.random.key(0)) == ()


@pytest.mark.parametrize("factory", [nj.max_pool, nj.avg_pool])
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0,), ValueError, r"window must be an int >= 1, got 0"),
        (((2, 2, 2),), ValueError, r"window must be an int or a pair of ints, got 3 values"),
        ((2.0,), TypeError, r"window must be an int, got 2\.0"),
        ((2, 0), ValueError, r"stride must be an int >= 1, got 0"),
        ((2, (1, -1)), ValueError, r"stride must be an int >= 1, got -1"),
    ],
)
def test_factories_reject_bad_arguments(factory, args, error, match):
    with pytest.raises(error, match=f"{factory.__name__}: {match}"):
        factory(*args)


@pytest.mark.parametrize(
    ("layer", "shape", "match"),
    [
        (
            nj.max_pool(2),
            (2, 8, 8),
            r"max_pool\(2x2\): x must have shape \(batch, height, width, channels\) \(NHWC, "
            r"rank 4\), got \(2, 8, 8\) \(rank 3\)",
        ),
        (
            nj.avg_pool((2, 5)),
            (2, 8, 4, 1),
            r"avg_pool\(2x5\): the window width 5 is larger than the input width 4 "
            r"\(after padding\); expected an input width >= 5",
        ),
        (
            nj.max_pool(3, 1),
            (1, 2, 9, 1),
            r"the window height 3 is larger than the input height 2",
        ),
    ],
)
def test_bad_input_names_expected_and_actual(layer, shape, match):
    x = jnp.zeros(shape, jnp.float32)
    with pytest.raises(ValueError, match=match):
        layer.apply((), x)
    with pytest.raises(ValueError, match=match):
        jax.jit(layer.backward)((), x, jnp.zeros((1, 1, 1, 1), jnp.float32))


def test_bad_dtype_and_grad_shape():
    layer = nj.max_pool(2)
    with pytest.raises(TypeError, match=r"max_pool\(2x2\): x must have a floating dtype"):
        layer.apply((), jnp.zeros((1, 4, 4, 1), jnp.int32))
    with pytest.raises(
        ValueError,
        match=r"max_pool\(2x2\): grad_y must have the shape of the output \(1, 2, 2, 1\), "
        r"got \(1, 4, 4, 1\)",
    ):
        layer.backward((), jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 1)))
