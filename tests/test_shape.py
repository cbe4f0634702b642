"""flatten and reshape: values, the backward against jax.vjp (under jit, vmap and lax.scan),
output_shape on a CNN, bad arguments and inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan
from helpers import vjp_of_apply as _vjp

import nnrs_jax as nj

LAYERS = {
    "flatten_4d": (nj.flatten, (3, 4, 5, 2)),
    "flatten_2d": (nj.flatten, (3, 7)),
    "flatten_1d": (nj.flatten, (5,)),
    "reshape": (lambda: nj.reshape((2, 5, 4)), (3, 40)),
    "reshape_infer": (lambda: nj.reshape((-1, 2)), (3, 4, 5)),
}


def _case(name: str, dtype, seed: int = 0):
    factory, shape = LAYERS[name]
    layer = factory()
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape), dtype)
    y = jax.eval_shape(layer.apply, (), x)
    dy = jnp.asarray(rng.normal(size=y.shape), dtype)
    return layer, x, dy


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", LAYERS)
def test_forward_is_row_major_reshape_and_backward_matches_vjp(name, dtype):
    layer, x, dy = _case(name, dtype)
    y = layer.apply((), x)
    np.testing.assert_array_equal(np.asarray(y).ravel(), np.asarray(x).ravel())
    assert y.shape[0] == x.shape[0] and y.dtype == dtype
    grads = jax.jit(layer.backward)((), x, dy)
    assert grads[0] == () and grads[1].shape == x.shape and grads[1].dtype == dtype
    report = nj.check_layer(layer, x, key=jax.random.key(0), rtol=TOL[dtype])
    assert report.ok, str(report)


@pytest.mark.parametrize("name", ["flatten_4d", "reshape_infer"])
def test_backward_under_vmap_and_scan(name):
    layer, x, dy = _case(name, jnp.float64, seed=1)
    xs, dys = jnp.stack([x, -x]), jnp.stack([dy, 2.0 * dy])
    check_vmap_and_scan(layer, (), xs, dys, lambda _, a, b: _vjp(layer.apply, a, b))


def test_shapes_and_names():
    def out(layer, shape):
        return layer.apply((), jnp.zeros(shape, jnp.float32)).shape

    assert out(nj.flatten(), (2, 5, 5, 64)) == (2, 1600)
    assert out(nj.flatten(), (4,)) == (4, 1)
    assert out(nj.reshape((28, 28, 1)), (3, 784)) == (3, 28, 28, 1)
    assert out(nj.reshape((np.int64(4), -1)), (2, 8)) == (2, 4, 2)
    assert nj.flatten().name == "flatten" and nj.reshape([7, -1]).name == "reshape((7, -1))"


def test_output_shape_of_a_cnn():
    cnn = nj.serial(
        nj.conv2d(1, 32, 3),
        nj.relu(),
        nj.max_pool(2),
        nj.conv2d(32, 64, 3),
        nj.relu(),
        nj.max_pool(2),
        nj.flatten(),
    )
    assert nj.output_shape(cnn, (128, 28, 28, 1)) == (128, 1600)
    same = nj.serial(nj.conv2d(3, 8, 5, stride=2, padding="same"), nj.avg_pool(3, 1))
    assert nj.output_shape(same, (2, 15, 16, 3)) == (2, 6, 6, 8)
    back = nj.serial(nj.reshape((28, 28, 1)), nj.conv2d(1, 4, 3), nj.flatten())
    assert nj.output_shape(back, (5, 784)) == (5, 26 * 26 * 4)


@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [
        ((3, 0), ValueError, r"reshape: shape must hold positive ints and at most one -1"),
        ((-1, -1), ValueError, r"reshape: shape must hold positive ints and at most one -1"),
        ((2, -3), ValueError, r"reshape: shape must be an int >= -1, got -3"),
        ((2.0,), TypeError, r"reshape: shape must be an int, got 2\.0"),
        (6, TypeError, r"reshape: shape must be a tuple of ints, got int"),
    ],
)
def test_reshape_rejects_bad_shapes(shape, error, match):
    with pytest.raises(error, match=match):
        nj.reshape(shape)


def test_reshape_size_mismatch_names_both_sizes():
    with pytest.raises(
        ValueError,
        match=r"reshape\(\(5, 5\)\): cannot reshape an example of shape \(24,\) \(24 values\) "
        r"to \(5, 5\) \(25 values\)",
    ):
        nj.reshape((5, 5)).apply((), jnp.zeros((2, 24), jnp.float32))
    with pytest.raises(ValueError, match=r"to \(-1, 5\) \(a multiple of 5 values\)"):
        nj.reshape((-1, 5)).apply((), jnp.zeros((2, 24), jnp.float32))


def test_bad_input_and_grad_shape():
    with pytest.raises(TypeError, match=r"flatten: x must have a floating dtype"):
        nj.flatten().apply((), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"flatten: x must have a batch axis"):
        nj.flatten().apply((), jnp.float32(1.0))
    with pytest.raises(
        ValueError,
        match=r"flatten: grad_y must have the shape of the output \(2, 6\), got \(2, 5\)",
    ):
        nj.flatten().backward((), jnp.zeros((2, 3, 2)), jnp.zeros((2, 5)))
