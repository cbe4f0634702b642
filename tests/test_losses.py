"""Losses: hand-written gradients against jax.grad, label/one-hot agreement, extreme logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, rel_err

import nnrs_jax as nj

LOSSES = {"cross_entropy": nj.cross_entropy, "mse": nj.mse, "softmax_mse": nj.softmax_mse}


def _case(seed: int, dtype, one_hot: bool):
    rng = np.random.default_rng(seed)
    batch, classes = int(rng.integers(1, 17)), int(rng.integers(2, 12))
    k1, k2 = jax.random.split(jax.random.key(seed))
    outputs = 3.0 * jax.random.normal(k1, (batch, classes), dtype)
    labels = jax.random.randint(k2, (batch,), 0, classes, jnp.int32)
    targets = jax.nn.one_hot(labels, classes, dtype=dtype) if one_hot else labels
    return outputs, targets


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one_hot"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", LOSSES)
def test_backward_matches_grad(name, seed, dtype, one_hot):
    loss = LOSSES[name]
    outputs, targets = _case(seed, dtype, one_hot)
    want = jax.grad(loss.value)(outputs, targets)
    got = loss.backward(outputs, targets)
    assert got.dtype == dtype and loss.value(outputs, targets).dtype == dtype
    assert rel_err(got, want) <= TOL[dtype]
    assert rel_err(jax.jit(loss.backward)(outputs, targets), want) <= TOL[dtype]


@pytest.mark.parametrize("name", LOSSES)
def test_backward_under_vmap_and_scan(name):
    loss = LOSSES[name]
    outputs, labels = _case(5, jnp.float64, one_hot=False)
    outs = jnp.stack([outputs, -outputs, 0.3 * outputs])
    want = jnp.stack([jax.grad(loss.value)(o, labels) for o in outs])
    assert rel_err(jax.vmap(loss.backward, in_axes=(0, None))(outs, labels), want) <= 1e-10
    _, got = jax.lax.scan(lambda c, o: (c, loss.backward(o, labels)), None, outs)
    assert rel_err(got, want) <= 1e-10


@pytest.mark.parametrize("name", LOSSES)
def test_labels_and_one_hot_agree(name):
    loss = LOSSES[name]
    outputs, labels = _case(1, jnp.float64, one_hot=False)
    one_hot = jax.nn.one_hot(labels, outputs.shape[1], dtype=jnp.float64)
    assert float(loss.value(outputs, labels)) == pytest.approx(float(loss.value(outputs, one_hot)))
    np.testing.assert_allclose(loss.backward(outputs, labels), loss.backward(outputs, one_hot))


def test_cross_entropy_value_by_hand():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], jnp.float64)
    labels = jnp.array([2, 0], jnp.int32)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    want = -(np.log(p[2]) + np.log(1 / 3)) / 2
    assert float(nj.cross_entropy.value(logits, labels)) == pytest.approx(want, rel=1e-14)


def test_mse_value_by_hand():
    y = jnp.array([[0.5, -1.0]], jnp.float64)
    assert float(nj.mse.value(y, jnp.array([1], jnp.int32))) == pytest.approx((0.25 + 4.0) / 2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_cross_entropy_extreme_logits(dtype):
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    labels = jnp.array([1, 0], jnp.int32)
    value = float(nj.cross_entropy.value(logits, labels))
    # Both rows have the true class 2e4 below the best logit; row 2 adds log 2.
    assert value == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-6)
    grad = np.asarray(nj.cross_entropy.backward(logits, labels))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-7)


@pytest.mark.parametrize("name", LOSSES)
def test_bad_targets(name):
    loss = LOSSES[name]
    outputs = jnp.zeros((4, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        loss.value(outputs, jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        loss.backward(outputs, jnp.zeros((4, 2), jnp.float32))
    with pytest.raises(ValueError, match="outputs"):
        loss.value(jnp.zeros((4,), jnp.float32), jnp.zeros((4,), jnp.int32))


@pytest.mark.parametrize("name", LOSSES)
def test_wrong_types_and_dtypes_raise_type_error(name):
    loss = LOSSES[name]
    labels = jnp.zeros((4,), jnp.int32)
    with pytest.raises(TypeError, match=rf"^{name}: outputs must have a floating dtype, got int32"):
        loss.value(jnp.zeros((4, 3), jnp.int32), labels)
    with pytest.raises(TypeError, match=rf"^{name}: outputs must be an array, got list"):
        loss.backward([[0.0, 1.0]], labels)
    with pytest.raises(TypeError, match=rf"^{name}: targets must be an array, got list"):
        loss.value(jnp.zeros((4, 3), jnp.float32), [0, 1, 2, 0])
    with pytest.raises(ValueError, match=rf"^{name}: outputs must have shape \(batch, classes\)"):
        jax.jit(loss.value)(jnp.zeros((4, 3, 1), jnp.float32), labels)


@pytest.mark.parametrize(
    ("loss", "words"),
    [
        (nj.cross_entropy, "Softmax cross-entropy on logits"),
        (nj.mse, "Mean squared error over all elements"),
        (nj.softmax_mse, "The seed's MSE variant"),
    ],
)
def test_help_shows_each_losss_own_formula(loss, words):
    import pydoc

    assert words in pydoc.render_doc(loss, renderer=pydoc.plaintext)
    assert isinstance(loss, nj.Loss) and loss == nj.Loss(*loss)  # still a Loss, equal by fields
