"""conv2d: forward against lax.conv_general_dilated, the hand-written backward against jax.vjp
(float64 and float32, under jit, vmap and lax.scan), init scales, penalty, compiled structure,
bad arguments and inputs."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err
from jax import lax

import nnrs_jax as nj

# (in, out, kernel_size, stride, padding, input (H, W)); padding in conv2d's own terms.
CASES = {
    "3x3": (3, 4, 3, 1, "valid", (7, 8)),
    "one_channel": (1, 5, 3, 1, "valid", (9, 7)),
    "stride2_same": (3, 4, (2, 3), 2, "same", (9, 7)),
    "int_padding": (2, 5, 3, 2, 1, (8, 8)),
    "pair_padding_stride3": (2, 3, 3, 3, (0, 2), (10, 6)),
    "padding_above_kernel": (1, 3, 3, 2, 4, (5, 5)),
    "non_square_one_channel": (1, 2, (3, 1), (1, 2), "same", (6, 5)),
    "1x1": (5, 2, 1, 1, "valid", (4, 4)),
    "kernel_equals_input": (2, 3, (4, 3), 1, "valid", (4, 3)),
}


def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _reference_forward(case):
    """The same convolution with lax.conv_general_dilated (padding as lax spells it)."""
    _, _, _, stride, padding, _ = CASES[case]
    if isinstance(padding, str):
        lax_padding = padding.upper()
    else:
        ph, pw = _pairs(padding)
        lax_padding = ((ph, ph), (pw, pw))

    def forward(params, x):
        y = lax.conv_general_dilated(
            x,
            params.w,
            _pairs(stride),
            lax_padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + params.b[None, None, None, :]

    return forward


def _init(layer: nj.Layer, seed: int = 0):
    """``layer.init`` compiled once (eager, each random op would compile on its own)."""
    return jax.jit(layer.init)(jax.random.key(seed))


def _case(case: str, dtype, seed: int = 0, batch: int = 4):
    c_in, c_out, kernel, stride, padding, (h, w) = CASES[case]
    layer = nj.conv2d(c_in, c_out, kernel, stride, padding, dtype=dtype)
    params = _init(layer, seed)
    # NumPy draws the data: eager jax.random would compile anew for every shape.
    rng = np.random.default_rng(seed)
    # A non-zero bias, so that its gradient and its place in the forward are both checked.
    params = params._replace(b=jnp.asarray(rng.normal(size=params.b.shape), dtype))
    x = jnp.asarray(rng.normal(size=(batch, h, w, c_in)), dtype)
    y = jax.eval_shape(layer.apply, params, x)
    dy = jnp.asarray(rng.normal(size=y.shape), dtype)
    return layer, params, x, dy


@functools.partial(jax.jit, static_argnums=0)  # jax 0.5.1 rejects @jax.jit(static_argnums=0)
def _vjp(apply, params, x, dy):
    _, pullback = jax.vjp(apply, params, x)
    return pullback(dy)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES)
def test_forward_matches_lax_conv(case, dtype):
    layer, params, x, _ = _case(case, dtype)
    y = jax.jit(layer.apply)(params, x)
    want = jax.jit(_reference_forward(case))(params, x)
    assert y.shape == want.shape and y.dtype == dtype
    assert rel_err(y, want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_vjp(case, dtype):
    layer, params, x, dy = _case(case, dtype, seed=1)
    grads = jax.jit(layer.backward)(params, x, dy)
    assert jax.tree.structure(grads[0]) == jax.tree.structure(params)
    assert isinstance(grads[0], nj.Conv2dParams)
    assert grads[0].w.dtype == dtype and grads[0].b.dtype == dtype and grads[1].dtype == dtype
    assert grads[1].shape == x.shape
    # Against autodiff of the layer's own forward and of the independent lax forward.
    report = nj.check_layer(layer, x, params=params, key=jax.random.key(1), rtol=TOL[dtype])
    assert report.ok, str(report)
    assert rel_err(grads, _vjp(_reference_forward(case), params, x, dy)) <= TOL[dtype]


@pytest.mark.parametrize("case", ["3x3", "one_channel", "stride2_same"])
def test_backward_under_jit_vmap_and_scan(case):
    layer, params, x, dy = _case(case, jnp.float64, seed=2)
    got = jax.jit(layer.backward)(params, x, dy)
    assert rel_err(got, _vjp(layer.apply, params, x, dy)) <= 1e-10

    xs = jnp.stack([x, 0.5 * x - 1.0, -x])
    dys = jnp.stack([dy, -dy, 2.0 * dy])
    check_vmap_and_scan(layer, params, xs, dys, lambda p, a, b: _vjp(layer.apply, p, a, b))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
def test_check_grads_small_cnn(dtype):
    model = nj.serial(
        nj.conv2d(1, 4, 3, dtype=dtype),
        nj.relu(),
        nj.max_pool(2),
        nj.conv2d(4, 6, (2, 3), padding="same", regularizer=nj.l2(1e-3), dtype=dtype),
        nj.relu(),
        nj.flatten(),
        nj.dense(6 * 4 * 4, 5, dtype=dtype),
    )
    params = _init(model, 3)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(size=(6, 10, 10, 1)), dtype)
    y = jnp.asarray(rng.integers(0, 5, size=6), jnp.int32)
    # The model's functions compiled whole (as in a training step): eagerly, each primitive of
    # the autodiff reference would compile on its own, for tens of seconds.
    compiled = nj.Layer.context(
        model.init,
        jax.jit(model.forward, static_argnames="train"),
        jax.jit(model.backward, static_argnames="train"),
        penalty=jax.jit(model.penalty),
        name=model.name,
    )
    assert nj.check_grads(compiled, nj.cross_entropy, params, x, y) <= TOL[dtype]


def test_shapes_dtype_and_name():
    layer = nj.conv2d(3, 16, (5, 3), stride=2, padding="same")
    params = _init(layer)
    assert params.w.shape == (5, 3, 3, 16) and params.b.shape == (16,)
    assert params.w.dtype == jnp.float32 and not np.any(np.asarray(params.b))
    assert layer.name == "conv2d(3, 16, 5x3, stride=2, padding='same')"
    assert layer.apply(params, jnp.zeros((2, 9, 8, 3), jnp.float32)).shape == (2, 5, 4, 16)
    assert nj.conv2d(1, 2, 3, padding=(1, 0)).name == "conv2d(1, 2, 3x3, padding=(1, 0))"
    f64 = _init(nj.conv2d(1, 2, 3, dtype=jnp.float64))
    assert f64.w.dtype == jnp.float64 and f64.b.dtype == jnp.float64


@pytest.mark.parametrize(
    ("init", "variance"),
    [
        ("he", 2.0 / (3 * 3 * 32)),
        ("lecun", 1.0 / (3 * 3 * 32)),
        ("glorot", 2.0 / (3 * 3 * 32 + 3 * 3 * 64)),
    ],
)
def test_init_uses_receptive_field_fans(init, variance):
    """Fan-in kh·kw·in and fan-out kh·kw·out: 18 432 draws pin the variance to within 5 %."""
    w = _init(nj.conv2d(32, 64, 3, init=init)).w
    assert abs(float(jnp.var(w)) / variance - 1.0) < 0.05
    assert abs(float(jnp.mean(w))) < 0.05 * np.sqrt(variance)


def test_regularizer_penalises_the_kernel_only():
    layer = nj.conv2d(2, 3, 3, regularizer=nj.elastic_net(0.1, 0.2))
    params = _init(layer)
    params = params._replace(b=jnp.ones(3))
    value, grads = layer.penalty(params)
    w = params.w
    want = 0.1 * jnp.sum(jnp.abs(w)) + 0.2 * jnp.sum(w * w)
    np.testing.assert_allclose(value, want, rtol=1e-6)
    np.testing.assert_allclose(grads.w, 0.1 * jnp.sign(w) + 0.4 * w, rtol=1e-6)
    assert not np.any(np.asarray(grads.b))
    assert nj.conv2d(2, 3, 3).penalty(params)[0] == 0.0


def _compiled(model, x_shape, n_classes):
    params = _init(model)
    x = jnp.zeros(x_shape, jnp.float32)
    y = jnp.zeros((x_shape[0],), jnp.int32)

    def grads(p, x, y):
        return nj.loss_and_grad(model, nj.cross_entropy, p, x, y)[1]

    return jax.jit(grads).lower(params, x, y).compile().as_text()


def test_first_layer_input_gradient_is_dropped():
    """Only the second convolution's dx is a convolution: the first layer's dx is never run."""
    conv = functools.partial(nj.conv2d, impl="patches")  # the structure of this policy
    one = nj.serial(conv(1, 4, 3), nj.relu(), nj.flatten(), nj.dense(4 * 6 * 6, 3))
    two = nj.serial(conv(2, 4, 3), nj.relu(), conv(4, 4, 3), nj.flatten(), nj.dense(4 * 4 * 4, 3))
    # XLA's CPU backend keeps `convolution` ops; its GPU backend turns them into cuDNN calls.
    convolutions = re.compile(r"= \S+ convolution\(|custom_call_target=\"__cudnn\$conv")
    assert len(convolutions.findall(_compiled(one, (8, 8, 8, 1), 3))) == 0
    assert len(convolutions.findall(_compiled(two, (8, 8, 8, 2), 3))) == 1


def test_one_compile_per_shape():
    layer = nj.conv2d(2, 3, 3)
    params = _init(layer)
    traces = []

    @jax.jit
    def step(params, x, dy):
        traces.append(None)
        return layer.backward(params, x, dy)

    for scale in (1.0, 2.0, 3.0):
        step(
            params, jnp.full((2, 5, 5, 2), scale, jnp.float32), jnp.ones((2, 3, 3, 3), jnp.float32)
        )
    assert len(traces) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_channels": 0}, ValueError, r"conv2d: in_channels must be an int >= 1, got 0"),
        ({"out_channels": 2.0}, TypeError, r"conv2d: out_channels must be an int, got 2\.0"),
        ({"kernel_size": 0}, ValueError, r"conv2d: kernel_size must be an int >= 1, got 0"),
        ({"kernel_size": (3, 3, 3)}, ValueError, r"kernel_size must be an int or a pair.*3 values"),
        ({"kernel_size": True}, TypeError, r"conv2d: kernel_size must be an int, got True"),
        ({"stride": (1, 0)}, ValueError, r"conv2d: stride must be an int >= 1, got 0"),
        ({"padding": "full"}, ValueError, r"conv2d: padding must be 'valid', 'same'.*'full'"),
        ({"padding": -1}, ValueError, r"conv2d: padding must be an int >= 0, got -1"),
        ({"padding": 1.5}, TypeError, r"conv2d: padding must be an int, got 1\.5"),
        ({"regularizer": 0.1}, TypeError, r"conv2d: regularizer must be nj\.l1/l2.*got 0\.1"),
        ({"init": "xavier"}, ValueError, r"conv2d: init must be one of .*'xavier'"),
    ],
)
def test_factory_rejects_bad_arguments(kwargs, error, match):
    args = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=match):
        nj.conv2d(**args)


def test_numpy_integers_are_accepted():
    layer = nj.conv2d(np.int64(1), np.int32(2), (np.int64(3), 3), stride=np.int64(1))
    assert _init(layer).w.shape == (3, 3, 1, 2)


@pytest.mark.parametrize(
    ("layer", "shape", "error", "match"),
    [
        (
            nj.conv2d(1, 4, 3),
            (2, 28, 28),
            ValueError,
            r"conv2d\(1, 4, 3x3\): x must have shape \(batch, height, width, 1\) \(NHWC, rank 4\), "
            r"got \(2, 28, 28\) \(rank 3\)",
        ),
        (
            nj.conv2d(3, 4, 3),
            (2, 8, 8, 1),
            ValueError,
            r"conv2d\(3, 4, 3x3\): x must have shape \(batch, height, width, 3\): "
            r"expected 3 channels, got 1",
        ),
        (
            nj.conv2d(1, 4, (5, 3)),
            (2, 4, 8, 1),
            ValueError,
            r"conv2d\(1, 4, 5x3\): the kernel height 5 is larger than the input height 4 "
            r"\(after padding\); expected an input height >= 5",
        ),
        (
            nj.conv2d(1, 4, 5, padding=1),
            (2, 9, 2, 1),
            ValueError,
            r"the kernel width 5 is larger than the input width 4 \(after padding\)",
        ),
    ],
)
def test_bad_input_names_expected_and_actual(layer, shape, error, match):
    params = _init(layer)
    x = jnp.zeros(shape, jnp.float32)
    with pytest.raises(error, match=match):
        layer.apply(params, x)
    with pytest.raises(error, match=match):
        jax.jit(layer.backward)(params, x, jnp.zeros((2, 1, 1, 4), jnp.float32))


def test_bad_dtype_and_grad_shape():
    layer = nj.conv2d(1, 2, 3)
    params = _init(layer)
    with pytest.raises(TypeError, match=r"conv2d\(1, 2, 3x3\): x must have a floating dtype"):
        layer.apply(params, jnp.zeros((1, 5, 5, 1), jnp.int32))
    with pytest.raises(
        TypeError,
        match=r"conv2d\(1, 2, 3x3\): x must have the parameters' dtype float32, got float64",
    ):
        layer.apply(params, jnp.zeros((1, 5, 5, 1), jnp.float64))
    with pytest.raises(TypeError, match=r"grad_y must have the parameters' dtype float32"):
        layer.backward(params, jnp.zeros((1, 5, 5, 1), jnp.float32), jnp.zeros((1, 3, 3, 2)))
    with pytest.raises(
        ValueError,
        match=r"conv2d\(1, 2, 3x3\): grad_y must have the shape of the output \(1, 3, 3, 2\), "
        r"got \(1, 3, 3, 3\)",
    ):
        layer.backward(params, jnp.zeros((1, 5, 5, 1)), jnp.zeros((1, 3, 3, 3)))


def test_flat_images_get_a_reshape_hint():
    layer = nj.conv2d(1, 2, 3)
    with pytest.raises(ValueError, match=r"got \(2, 784\) \(rank 2\); reshape flat images first"):
        layer.apply(_init(layer), jnp.zeros((2, 784), jnp.float32))
