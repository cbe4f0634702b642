"""nj.check_layer: every built-in layer passes in float64 and float32; a wrong backward fails;
the tolerance follows the dtype; bad arguments get clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj


def _mixed(dtype) -> nj.Layer:
    """A bias right before batch_norm: its gradient is zero in theory, rounding noise in fact."""
    return nj.serial(
        nj.dense(5, 7, dtype=dtype),
        nj.batch_norm(7, dtype=dtype),
        nj.selu(),
        nj.dropout(0.2),
        nj.dense(7, 3, dtype=dtype),
    )


def _layers(dtype) -> dict[str, tuple[nj.Layer, tuple[int, ...], dict]]:
    """name -> (layer, input shape, check_layer keywords)."""
    image = (3, 8, 8, 2)
    return {
        "dense": (nj.dense(5, 4, dtype=dtype), (6, 5), {}),
        "elu": (nj.elu(1.3), (6, 5), {}),
        "softmax": (nj.softmax(), (6, 5), {}),
        "conv2d": (nj.conv2d(2, 3, 3, padding="same", dtype=dtype), image, {}),
        "max_pool": (nj.max_pool(2), image, {}),
        "avg_pool": (nj.avg_pool(3, stride=2), image, {}),
        "flatten": (nj.flatten(), image, {}),
        "batch_norm/train": (nj.batch_norm(5, dtype=dtype), (6, 5), {"train": True}),
        "batch_norm/eval": (nj.batch_norm(5, dtype=dtype), (6, 5), {}),
        "dropout/train": (nj.dropout(0.3), (6, 5), {"train": True}),
        "residual": (nj.residual(nj.serial(nj.dense(5, 5, dtype=dtype), nj.tanh())), (6, 5), {}),
        "serial": (_mixed(dtype), (6, 5), {"train": True}),
    }


NAMES = list(_layers(jnp.float32))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_every_built_in_layer_passes(name, dtype):
    layer, shape, kwargs = _layers(dtype)[name]
    x = jax.random.normal(jax.random.key(1), shape, dtype) + 0.01
    report = nj.check_layer(layer, x, key=jax.random.key(2), **kwargs)
    assert report.rtol == (1e-10 if dtype == jnp.float64 else 1e-5)
    assert report.ok, str(report)
    assert report.name == layer.name and "grad_x" in report.errors
    assert report.max_error == max(report.errors.values())


def _swish(backward) -> nj.Layer:
    return nj.Layer(nj.no_params, lambda p, x: x * jax.nn.sigmoid(x), backward, name="swish")


def test_a_wrong_backward_fails_and_says_where():
    layer = nj.Layer(
        lambda k: jnp.ones((4,), jnp.float32),
        lambda p, x: x * p[None, :],
        lambda p, x, dy: (jnp.sum(dy * x, axis=0), 1.5 * dy * p[None, :]),  # grad_x 50 % off
        name="scale",
    )
    report = nj.check_layer(layer, jnp.ones((3, 4), jnp.float32))
    assert not report.ok
    assert report.errors["params"] <= report.rtol
    assert report.errors["grad_x"] == pytest.approx(0.5, rel=1e-6)
    text = str(report)
    assert text.startswith("check_layer(scale): FAILED, max relative error 5.00e-01 (rtol 1e-05)")
    assert "grad_x  5.00e-01  <-- exceeds rtol" in text


def test_a_correct_user_layer_passes_and_prints_ok():
    sig = jax.nn.sigmoid
    good = _swish(lambda p, x, dy: ((), dy * sig(x) * (1 + x * (1 - sig(x)))))
    report = nj.check_layer(good, jnp.linspace(-3.0, 3.0, 12, dtype=jnp.float32).reshape(3, 4))
    assert report.ok and str(report).startswith("check_layer(swish): ok")


def test_rtol_follows_the_least_precise_dtype_and_can_be_given():
    layer = nj.dense(4, 2, dtype=jnp.float16)
    report = nj.check_layer(layer, jnp.ones((3, 4), jnp.float16))
    assert report.rtol == 1e-2 and report.ok, str(report)
    assert nj.check_layer(nj.relu(), jnp.ones((2, 3), jnp.float32), rtol=1e-3).rtol == 1e-3


def test_given_params_and_state_are_used():
    layer = nj.dense(3, 2, dtype=jnp.float32)
    params = nj.DenseParams(jnp.zeros((3, 2), jnp.float32), jnp.zeros((2,), jnp.float32))
    report = nj.check_layer(layer, jnp.ones((4, 3), jnp.float32), params=params)
    assert report.ok and report.errors["grad_x"] == 0.0  # w = 0: both grad_x are exactly zero


def test_integer_inputs_check_the_params_only():
    table = nj.Layer(
        lambda k: jax.random.normal(k, (5, 3), jnp.float32),
        lambda p, i: p[i],
        lambda p, i, dy: (jnp.zeros_like(p).at[i].add(dy), jnp.zeros(i.shape, jnp.float32)),
        name="lookup",
    )
    report = nj.check_layer(table, jnp.array([0, 3, 3, 1], jnp.int32))
    assert report.ok and sorted(report.errors) == ["params"]


def test_contract_breaks_raise():
    with pytest.raises(nj.LayerContractError, match="swish: backward must return a pair"):
        nj.check_layer(_swish(lambda p, x, dy: None), jnp.ones((2, 3), jnp.float32))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": lambda x: x}, TypeError, "check_layer: layer must be a Layer"),
        (
            {"x": [[1.0, 2.0]]},
            TypeError,
            "check_layer: x must be an array or a tuple of arrays, got list",
        ),
        ({"train": 1}, TypeError, "check_layer: train must be a bool, got"),
        ({"rtol": -1.0}, ValueError, "check_layer: rtol must be a positive number, got -1.0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"layer": nj.relu(), "x": jnp.ones((2, 2), jnp.float32), **kwargs}
    with pytest.raises(error, match=match):
        nj.check_layer(args.pop("layer"), args.pop("x"), **args)


def test_relative_error_is_the_test_suite_referee():
    from nnrs_jax.layers.check import relative_error

    assert relative_error(np.array([1.0, 2.1]), np.array([1.0, 2.0])) == pytest.approx(0.05)
    assert relative_error(np.zeros(2), np.zeros(2)) == 0.0
    assert relative_error(np.array([1e-300]), np.zeros(1)) > 1.0  # absolute when ref is zero
