"""multi_head_attention: its hand-written backward against jax.vjp (nj.check_layer) in float64
and float32, causal and not; causality; jit, vmap and lax.scan; shapes; bad input; equality;
and a tiny model that trains."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err

import nnrs_jax as nj
from nnrs_jax.layers import attention
from nnrs_jax.layers.attention import AttentionParams, multi_head_attention

# A multi-head case, time 1, and a single head (each causal and not, float64 and float32).
SHAPES = [(2, 7, 12, 4), (3, 1, 6, 3), (1, 4, 4, 1)]


def _case(shape, causal: bool, dtype, seed: int = 0):
    batch, time, dim, heads = shape
    layer = multi_head_attention(dim, heads, causal=causal, dtype=dtype)
    k_init, k_bias, k_x = jax.random.split(jax.random.key(seed), 3)
    params = layer.init(k_init)
    # Nonzero biases, so that their paths through the backward pass are exercised too.
    b_qkv, b_o = jax.random.normal(k_bias, (2, 3 * dim), dtype)
    params = params._replace(b_qkv=0.3 * b_qkv, b_o=0.3 * b_o[:dim])
    x = jax.random.normal(k_x, (batch, time, dim), dtype)
    return layer, params, x


def _vjp(layer, params, x, dy):
    _, pullback = jax.vjp(layer.apply, params, x)
    return pullback(dy)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_vjp(shape, causal, dtype):
    layer, params, x = _case(shape, causal, dtype)
    report = nj.check_layer(layer, x, params=params, key=jax.random.key(7), rtol=TOL[dtype])
    assert report.ok, str(report)
    assert set(report.errors) == {
        "grad_x",
        "params.w_qkv",
        "params.b_qkv",
        "params.w_o",
        "params.b_o",
    }
    grads, dx = jax.eval_shape(layer.backward, params, x, x)  # shapes and dtypes only
    assert isinstance(grads, AttentionParams)
    for leaf, g in zip(params, grads, strict=True):
        assert g.shape == leaf.shape and g.dtype == leaf.dtype
    assert dx.shape == x.shape and dx.dtype == x.dtype


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_default_params_and_float32_default(causal):
    layer = multi_head_attention(8, 2, causal=causal)
    params = layer.init(jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in params)
    x = jax.random.normal(jax.random.key(1), (3, 6, 8), jnp.float32)
    report = nj.check_layer(layer, x)
    assert report.ok and report.rtol == 1e-5, str(report)


def test_causal_outputs_ignore_later_inputs():
    layer, params, x = _case((2, 6, 8, 2), True, jnp.float64, seed=3)
    apply = jax.jit(layer.apply)  # one program for every input below
    y = np.asarray(apply(params, x))
    for t in range(6):
        later = (jnp.arange(6) >= t)[None, :, None]
        changed = x + jnp.where(later, jax.random.normal(jax.random.key(t), x.shape), 0.0)
        y2 = np.asarray(apply(params, changed))
        np.testing.assert_array_equal(y2[:, :t], y[:, :t])
        assert np.all(np.abs(y2[:, t:] - y[:, t:]) > 0)
    # Without the mask the first position sees the last one.
    full = jax.jit(multi_head_attention(8, 2, dtype=jnp.float64).apply)
    y_full = np.asarray(full(params, x))
    y_full2 = np.asarray(full(params, x.at[:, -1, :].add(1.0)))
    assert np.all(np.abs(y_full2[:, 0] - y_full[:, 0]) > 0)


def test_causal_gradient_never_reaches_earlier_inputs_from_later_outputs():
    layer, params, x = _case((2, 5, 6, 3), True, jnp.float64, seed=4)
    dy = jnp.zeros_like(x).at[:, 2, :].set(1.0)
    _, dx = layer.backward(params, x, dy)
    assert np.all(np.asarray(dx[:, 3:]) == 0)
    assert np.all(np.abs(np.asarray(dx[:, :3])).sum(axis=-1) > 0)


def test_large_scores_stay_finite():
    layer, params, x = _case((2, 4, 4, 2), True, jnp.float64, seed=5)
    x = 300.0 * x
    y = layer.apply(params, x)
    grads, dx = layer.backward(params, x, jnp.ones_like(x))
    for leaf in (y, dx, *grads):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_under_jit(causal):
    layer, params, x = _case((3, 5, 8, 2), causal, jnp.float64, seed=6)
    dy = jax.random.normal(jax.random.key(9), x.shape, x.dtype)
    want = _vjp(layer, params, x, dy)
    eager = layer.backward(params, x, dy)
    assert rel_err(jax.jit(layer.backward)(params, x, dy), want) <= 1e-10
    assert rel_err(jax.jit(layer.backward)(params, x, dy), eager) <= 1e-12


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_under_vmap_and_scan(causal):
    layer, params, x = _case((2, 4, 6, 3), causal, jnp.float64, seed=8)
    dy = jax.random.normal(jax.random.key(10), x.shape, x.dtype)
    xs = jnp.stack([x, 0.5 * x - 1.0, -x])
    dys = jnp.stack([dy, -dy, 2.0 * dy])
    check_vmap_and_scan(layer, params, xs, dys, layer.backward)
    check_vmap_and_scan(layer, params, xs, dys, lambda p, a, b: _vjp(layer, p, a, b))


def test_output_shape():
    assert nj.output_shape(multi_head_attention(16, 4), (3, 10, 16)) == (3, 10, 16)
    model = nj.serial(multi_head_attention(6, 2, causal=True), multi_head_attention(6, 3))
    assert nj.output_shape(model, (2, 1, 6)) == (2, 1, 6)


def test_names_and_equality():
    assert multi_head_attention(8, 2) == multi_head_attention(8, 2)
    assert multi_head_attention(8, 2) == multi_head_attention(8, 2, causal=False, init="glorot")
    assert hash(multi_head_attention(8, 2)) == hash(multi_head_attention(8, 2))
    assert multi_head_attention(8, 2) != multi_head_attention(8, 4)
    assert multi_head_attention(8, 2) != multi_head_attention(8, 2, causal=True)
    assert multi_head_attention(8, 2).name == "multi_head_attention(8, 2)"
    assert multi_head_attention(8, 2, causal=True).name == "multi_head_attention(8, 2, causal=True)"


def test_init_scales():
    params = multi_head_attention(64, 4).init(jax.random.key(0))
    assert not np.any(np.asarray(params.b_qkv)) and not np.any(np.asarray(params.b_o))
    # Glorot per (dim, dim) block: variance 2 / (64 + 64).
    for w in (params.w_qkv[:, :64], params.w_qkv[:, 64:128], params.w_qkv[:, 128:], params.w_o):
        assert np.var(np.asarray(w)) == pytest.approx(1 / 64, rel=0.1)
    # The three blocks are drawn independently.
    assert not np.allclose(np.asarray(params.w_qkv[:, :64]), np.asarray(params.w_qkv[:, 64:128]))


def test_bad_input_names_the_layer():
    layer = multi_head_attention(8, 2)
    params = layer.init(jax.random.key(0))
    name = r"multi_head_attention\(8, 2\)"
    with pytest.raises(ValueError, match=name + r": x must have shape \(batch, time, 8\).*rank 2"):
        layer.apply(params, jnp.zeros((4, 8), jnp.float32))
    with pytest.raises(ValueError, match=name + r": x .*expected 8 features, got 6"):
        layer.apply(params, jnp.zeros((2, 3, 6), jnp.float32))
    with pytest.raises(TypeError, match=name + ": x must have a floating dtype"):
        layer.apply(params, jnp.zeros((2, 3, 8), jnp.int32))
    with pytest.raises(TypeError, match=name + ": x must have the dtype of the parameters"):
        layer.apply(params, jnp.zeros((2, 3, 8), jnp.float64))
    with pytest.raises(ValueError, match=name + ": x must have shape"):
        layer.backward(params, jnp.zeros((2, 3, 4, 8), jnp.float32), jnp.zeros((2, 3, 4, 8)))
    with pytest.raises(ValueError, match=name + ": grad_y must have the shape of the output"):
        layer.backward(params, jnp.zeros((2, 3, 8), jnp.float32), jnp.zeros((2, 4, 8)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="multi_head_attention: dim must be divisible by heads"):
        multi_head_attention(10, 3)
    with pytest.raises(ValueError, match="multi_head_attention: heads must be an int >= 1"):
        multi_head_attention(8, 0)
    with pytest.raises(TypeError, match="multi_head_attention: dim must be an int"):
        multi_head_attention(8.0, 2)
    with pytest.raises(TypeError, match="multi_head_attention: causal must be a bool"):
        multi_head_attention(8, 2, causal=1)
    with pytest.raises(TypeError, match="multi_head_attention: dtype must be a floating dtype"):
        multi_head_attention(8, 2, dtype=jnp.int32)
    with pytest.raises(ValueError, match="multi_head_attention: init must be one of"):
        multi_head_attention(8, 2, init="uniform")


def _mean_over_time() -> nj.Layer:
    """``(batch, time, dim) -> (batch, dim)``: the mean over time, and its backward."""
    return nj.Layer(
        nj.no_params,
        lambda p, x: jnp.mean(x, axis=1),
        lambda p, x, dy: ((), jnp.broadcast_to(dy[:, None, :], x.shape) / x.shape[1]),
        name="mean_over_time",
    )


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_tiny_model_trains(causal):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5, 8)).astype(np.float32)
    # A target that needs the positions to interact: each row's mean times the last position.
    y = (x.mean(axis=1)[:, :3] * x[:, -1, :3]).astype(np.float32)
    model = nj.serial(multi_head_attention(8, 2, causal=causal), _mean_over_time(), nj.dense(8, 3))
    check = nj.check_layer(model, jnp.asarray(x[:4]))
    assert check.ok, str(check)
    result = nj.fit(model, nj.mse, nj.adam(1e-2), x, y, key=jax.random.key(0), steps=60,
                    log_every=10, progress=False)  # fmt: skip
    losses = np.asarray(result.history["loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


def _padded(seed: int, dtype=jnp.float64):
    """A batch of 3 sequences of 6 steps: 4 real steps, 6 real steps, and only padding."""
    x = jax.random.normal(jax.random.key(seed), (3, 6, 8), dtype)
    lengths = jnp.array([4, 6, 0])
    return x, jnp.arange(6)[None, :] < lengths[:, None]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padding_mask_backward_matches_vjp(causal, dtype):
    layer = multi_head_attention(8, 2, causal=causal, dtype=dtype)
    x, keep = _padded(30, dtype)
    report = nj.check_layer(layer, (x, keep), key=jax.random.key(31), rtol=TOL[dtype])
    assert report.ok, str(report)
    params = layer.init(jax.random.key(0))
    grads, grad_x = layer.backward(params, (x, keep), jnp.ones_like(x))
    assert isinstance(grads, AttentionParams)
    assert grad_x[1] is None and grad_x[0].shape == x.shape


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padded_positions_change_nothing_at_real_ones(causal):
    """The real positions' outputs are those of the unpadded sequence, whatever the padding
    holds; a sequence of padding alone gives finite outputs."""
    layer = multi_head_attention(8, 2, causal=causal, dtype=jnp.float64)
    params = layer.init(jax.random.key(1))
    x, keep = _padded(32)
    # One compiled program for both inputs: bit equality is then a claim about the mask alone
    # (eager and compiled code may round differently, as on a GPU, where XLA fuses).
    apply = jax.jit(layer.apply)
    y = apply(params, (x, keep))
    for b, length in enumerate((4, 6)):
        alone = layer.apply(params, x[b : b + 1, :length])
        np.testing.assert_allclose(y[b, :length], alone[0], rtol=1e-12, atol=1e-12)
    noise = jax.random.normal(jax.random.key(33), x.shape, x.dtype)
    changed = jnp.where(keep[:, :, None], x, 100.0 * noise)
    y2 = apply(params, (changed, keep))
    np.testing.assert_array_equal(
        jnp.where(keep[:, :, None], y2, 0), jnp.where(keep[:, :, None], y, 0)
    )
    assert bool(jnp.all(jnp.isfinite(y)))
    # No gradient from a real output reaches a padded input.
    dy = jnp.where(keep[:, :, None], jnp.ones_like(x), 0.0)
    _, (dx, _) = layer.backward(params, (x, keep), dy)
    assert float(jnp.max(jnp.abs(jnp.where(keep[:, :, None], 0.0, dx)))) == 0.0


def test_all_true_mask_is_no_mask():
    layer, params, x = _case((2, 5, 6, 3), False, jnp.float64, seed=34)
    keep = jnp.ones(x.shape[:2], bool)
    np.testing.assert_array_equal(layer.apply(params, (x, keep)), layer.apply(params, x))


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (jnp.ones((2, 5), jnp.int32), TypeError,
         r"multi_head_attention\(6, 3\): mask must be a boolean array \(True: a real "
         r"position\), got int32"),
        (jnp.ones((2, 4), bool), ValueError,
         r"multi_head_attention\(6, 3\): mask must have shape \(batch, time\) = \(2, 5\), "
         r"got \(2, 4\)"),
        ([True] * 5, TypeError, r"mask must be a boolean array .*got list"),
    ],
)  # fmt: skip
def test_bad_masks_name_the_layer(mask, error, match):
    layer, params, x = _case((2, 5, 6, 3), False, jnp.float64)
    with pytest.raises(error, match=match):
        layer.apply(params, (x, mask))
    with pytest.raises(TypeError, match=r"x must be an array or a pair \(x, mask\), got a tuple"):
        layer.apply(params, (x, mask, mask))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_long_sequences_run_over_groups_of_examples(monkeypatch, causal):
    """Past `GROUP_BYTES` per batch the attention runs over groups of examples (a lax.map):
    the values are those of one call, and the backward still matches jax.vjp, with a mask."""
    x, keep = _padded(41)  # (3, 6, 8): 4 real steps, 6, and padding alone
    k_p, k_dy = jax.random.split(jax.random.key(42))
    dy = jax.random.normal(k_dy, x.shape, x.dtype)

    def run():
        layer = multi_head_attention(8, 2, causal=causal, dtype=jnp.float64)  # traced afresh
        params = layer.init(k_p)
        lowered = jax.jit(layer.apply).lower(params, (x, keep)).as_text()
        y = jax.jit(layer.apply)(params, (x, keep))
        grads, (dx, _) = jax.jit(layer.backward)(params, (x, keep), dy)
        return layer, params, lowered, y, grads, dx

    _, _, whole_text, y, grads, dx = run()
    # One example's (heads, time, time) scores: 2·6·6 float64 values, 576 bytes.
    monkeypatch.setattr(attention, "GROUP_BYTES", 2 * 6 * 6 * 8)
    layer, params, grouped_text, y_g, grads_g, dx_g = run()
    assert "while" in grouped_text and "while" not in whole_text
    np.testing.assert_allclose(y_g, y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx_g, dx, rtol=1e-12, atol=1e-13)
    for g, w in zip(grads_g, grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    report = nj.check_layer(layer, (x, keep), params=params, key=jax.random.key(43))
    assert report.ok, str(report)
