"""lstm and gru: the forward equations against a NumPy loop, the hand-written BPTT against
jax.vjp (float64 and float32), under jit, vmap and scan, shapes, errors that name the layer,
equality, and a small sequence model that learns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err

import nnrs_jax as nj
from nnrs_jax.layers.recurrent import GRUParams, LSTMParams, gru, lstm

FACTORIES = {"lstm": lstm, "gru": gru}
# (batch, time, in_features, hidden): a single time step, and a longer sequence.
SHAPES = [(2, 1, 3, 4), (3, 5, 2, 6)]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def _numpy_lstm(p: LSTMParams, x: np.ndarray, h0=None, c0=None) -> np.ndarray:
    """Every h_t of the documented LSTM equations, one step at a time (zero state by default)."""
    w_x, w_h, b = (np.asarray(a, np.float64) for a in p)
    hidden = w_h.shape[0]
    h = c = np.zeros((x.shape[0], hidden))
    if h0 is not None:
        h, c = np.asarray(h0, np.float64), np.asarray(c0, np.float64)
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w_x + h @ w_h + b
        i, f, g, o = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def _numpy_gru(p: GRUParams, x: np.ndarray, h0=None) -> np.ndarray:
    """Every h_t of the documented GRU equations (reset applied after the recurrent product)."""
    w_x, w_h, b_x, b_h = (np.asarray(a, np.float64) for a in p)
    hidden = w_h.shape[0]
    h = np.zeros((x.shape[0], hidden)) if h0 is None else np.asarray(h0, np.float64)
    out = []
    for t in range(x.shape[1]):
        a, u = x[:, t] @ w_x + b_x, h @ w_h + b_h
        r = _sigmoid(a[:, :hidden] + u[:, :hidden])
        z = _sigmoid(a[:, hidden : 2 * hidden] + u[:, hidden : 2 * hidden])
        n = np.tanh(a[:, 2 * hidden :] + r * u[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


REFERENCES = {"lstm": _numpy_lstm, "gru": _numpy_gru}


def _random_params(params, seed: int):
    """Params with every leaf redrawn (biases included), so no gradient path is trivially zero."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [0.5 * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(tree, new)


@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_the_documented_equations(kind, shape):
    batch, time, features, hidden = shape
    layer = FACTORIES[kind](features, hidden, return_sequences=True, dtype=jnp.float64)
    last = FACTORIES[kind](features, hidden, dtype=jnp.float64)
    params = _random_params(layer.init(jax.random.key(0)), 1)
    x = jax.random.normal(jax.random.key(2), (batch, time, features), jnp.float64)
    want = REFERENCES[kind](params, np.asarray(x))
    got = layer.apply(params, x)
    assert got.shape == (batch, time, hidden)
    assert rel_err(got, want) <= 1e-13
    assert rel_err(last.apply(params, x), want[:, -1]) <= 1e-13
    # The training-mode forward pass (which keeps what backward needs) gives the same values.
    for model in (layer, last):
        trained = nj.forward(model, params, x, train=True)[0]
        np.testing.assert_array_equal(np.asarray(trained), np.asarray(model.apply(params, x)))


def test_a_training_step_runs_the_lstm_forward_scan_once():
    """In training mode the forward pass and the one backward reruns are one computation:
    the compiled gradient holds two loops over time, the forward and the reverse scan."""
    model = nj.serial(nj.lstm(3, 8), nj.dense(8, 2))
    params = model.init(jax.random.key(0))
    x = jnp.ones((4, 6, 3), jnp.float32)
    y = jnp.zeros((4,), jnp.int32)

    def loops(train: bool) -> int:
        step = jax.jit(lambda p: nj.loss_and_grad(model, nj.cross_entropy, p, x, y, train=train))
        return step.lower(params).compile().as_text().count(" while(")

    assert loops(train=True) == 2
    assert loops(train=False) == 3  # inference-mode forward: a lighter scan of its own


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_vjp(kind, shape, return_sequences, dtype):
    batch, time, features, hidden = shape
    layer = FACTORIES[kind](features, hidden, return_sequences=return_sequences, dtype=dtype)
    x = jax.random.normal(jax.random.key(3), (batch, time, features), dtype)
    for params in (None, _random_params(layer.init(jax.random.key(0)), 4)):
        report = nj.check_layer(layer, x, params=params, rtol=TOL[dtype])
        assert report.ok, str(report)


def test_stacked_layers_pass_check_layer():
    model = nj.serial(
        lstm(3, 4, return_sequences=True, dtype=jnp.float64),
        gru(4, 5, dtype=jnp.float64),
        nj.dense(5, 2, dtype=jnp.float64),
    )
    x = jax.random.normal(jax.random.key(5), (3, 4, 3), jnp.float64)
    report = nj.check_layer(model, x, rtol=1e-10)
    assert report.ok, str(report)


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("kind", FACTORIES)
def test_backward_under_jit_vmap_and_scan(kind, return_sequences):
    layer = FACTORIES[kind](3, 4, return_sequences=return_sequences, dtype=jnp.float64)
    params = _random_params(layer.init(jax.random.key(0)), 6)
    out = (2, 5, 4) if return_sequences else (2, 4)
    xs = jax.random.normal(jax.random.key(7), (3, 2, 5, 3), jnp.float64)
    dys = jax.random.normal(jax.random.key(8), (3, *out), jnp.float64)
    grads = jax.tree.map(np.asarray, layer.backward(params, xs[0], dys[0]))
    assert isinstance(grads[0], LSTMParams if kind == "lstm" else GRUParams)
    assert rel_err(jax.jit(layer.backward)(params, xs[0], dys[0]), grads) <= 1e-10
    check_vmap_and_scan(layer, params, xs, dys, layer.backward)


@pytest.mark.parametrize("kind", FACTORIES)
def test_output_shape_and_param_shapes(kind, key):
    gates = 4 if kind == "lstm" else 3
    assert nj.output_shape(FACTORIES[kind](3, 7), (5, 9, 3)) == (5, 7)
    seq = FACTORIES[kind](3, 7, return_sequences=True)
    assert nj.output_shape(seq, (5, 9, 3)) == (5, 9, 7)
    model = nj.serial(seq, FACTORIES[kind](7, 2), nj.dense(2, 1))
    assert nj.output_shape(model, (5, 9, 3)) == (5, 1)
    params = FACTORIES[kind](3, 7, dtype=jnp.float64).init(key)
    assert params.w_x.shape == (3, gates * 7)
    assert params.w_h.shape == (7, gates * 7)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))


def test_lstm_biases_start_with_the_forget_gate_open(key):
    b = np.asarray(lstm(3, 4).init(key).b)
    np.testing.assert_array_equal(b, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    b = np.asarray(lstm(3, 4, forget_bias=0.0).init(key).b)
    np.testing.assert_array_equal(b, np.zeros(16))
    params = gru(3, 4).init(key)
    assert not np.any(np.asarray(params.b_x)) and not np.any(np.asarray(params.b_h))


def test_equal_arguments_give_equal_layers():
    assert lstm(3, 4) == lstm(3, 4)
    assert hash(lstm(3, 4)) == hash(lstm(3, 4))
    assert gru(3, 4) == gru(3, 4, init="glorot")
    assert lstm(3, 4) != lstm(3, 4, return_sequences=True)
    assert lstm(3, 4) != gru(3, 4)
    assert lstm(3, 4).name == "lstm(3, 4)"
    assert gru(3, 4, return_sequences=True).name == "gru(3, 4, return_sequences=True)"


def _bad_calls(kind: str):
    layer = FACTORIES[kind](3, 4)
    name = rf"{kind}\(3, 4\)"
    params = layer.init(jax.random.key(0))
    x = jnp.ones((2, 5, 3), jnp.float32)
    return [
        (lambda: layer.apply(params, x[:, 0]), ValueError,
         rf"{name}: x must have shape \(batch, time, 3\) \(rank 3\), got \(2, 3\) \(rank 2\)"),
        (lambda: layer.apply(params, jnp.ones((2, 5, 4), jnp.float32)), ValueError,
         rf"{name}: x must have shape \(batch, time, 3\): expected 3 features, got 4 "
         r"\(shape \(2, 5, 4\)\)"),
        (lambda: layer.apply(params, jnp.ones((2, 5, 3), jnp.int32)), TypeError,
         rf"{name}: x must have a floating dtype, got int32"),
        (lambda: layer.apply(params, x[:, :0]), ValueError,
         rf"{name}: x must hold at least one time step, got shape \(2, 0, 3\)"),
        (lambda: layer.backward(params, x[:, :, :2], jnp.ones((2, 4), jnp.float32)),
         ValueError, rf"{name}: .*expected 3 features, got 2"),
        (lambda: layer.backward(params, x, jnp.ones((2, 5, 4), jnp.float32)), ValueError,
         rf"{name}: grad_y must have the shape of the output \(2, 4\), got \(2, 5, 4\)"),
        (lambda: jax.jit(layer.apply)(params, x[0]), ValueError, rf"{name}: .*rank 2"),
        (lambda: nj.output_shape(layer, (2, 5, 6)), ValueError, rf"{name}: .*got 6"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(len(_bad_calls("lstm"))))
@pytest.mark.parametrize("kind", FACTORIES)
def test_bad_inputs_name_the_layer(kind, case):
    call, error, match = _bad_calls(kind)[case]
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden": 0}, ValueError, "hidden must be an int >= 1, got 0"),
        ({"in_features": 2.5}, TypeError, r"in_features must be an int, got 2\.5"),
        ({"return_sequences": 1}, TypeError, "return_sequences must be a bool, got 1"),
        ({"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype, got int32"),
        ({"init": "orthogonal"}, ValueError, "init must be one of"),
    ],
)
def test_factory_rejects_bad_arguments(kind, kwargs, error, match):
    args = {"in_features": 3, "hidden": 4, **kwargs}
    with pytest.raises(error, match=rf"{kind}: {match}"):
        FACTORIES[kind](**args)


def test_lstm_rejects_a_bad_forget_bias():
    with pytest.raises(ValueError, match=r"lstm: forget_bias must be a finite float, got inf"):
        lstm(3, 4, forget_bias=float("inf"))


@pytest.mark.parametrize("kind", FACTORIES)
def test_a_small_sequence_model_learns(kind):
    """Regress the running mean of a noisy sequence's first feature, read at the last step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 2)).astype(np.float32)
    y = x[:, :, :1].mean(axis=1)
    model = nj.serial(FACTORIES[kind](2, 8), nj.dense(8, 1))
    result = nj.fit(model, nj.mse, nj.adam(3e-2), x, y, key=jax.random.key(0), steps=60,
                    log_every=10, progress=False)  # fmt: skip
    loss = result.history["loss"]
    assert np.all(np.isfinite(loss))
    assert loss[-1] < 0.25 * loss[0], loss


def _with_state(kind: str, x: jax.Array, hidden: int, seed: int):
    """``(x, (h0, c0))`` for lstm, ``(x, h0)`` for gru, with random initial states."""
    h0, c0 = jax.random.normal(jax.random.key(seed), (2, x.shape[0], hidden), x.dtype)
    return (x, (h0, c0)) if kind == "lstm" else (x, h0)


@pytest.mark.parametrize("kind", FACTORIES)
def test_initial_state_forward_matches_the_equations(kind):
    layer = FACTORIES[kind](3, 4, return_sequences=True, dtype=jnp.float64)
    params = _random_params(layer.init(jax.random.key(0)), 11)
    x = jax.random.normal(jax.random.key(12), (2, 5, 3), jnp.float64)
    inputs = _with_state(kind, x, 4, 13)
    state = inputs[1] if kind == "lstm" else (inputs[1],)
    want = REFERENCES[kind](params, np.asarray(x), *state)
    np.testing.assert_allclose(layer.apply(params, inputs), want, rtol=1e-12, atol=1e-12)
    # A zero initial state is the default one, bit for bit.
    zeros = jax.tree.map(jnp.zeros_like, inputs[1])
    assert np.array_equal(layer.apply(params, (x, zeros)), layer.apply(params, x))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("kind", FACTORIES)
def test_initial_state_gradients_match_vjp(kind, return_sequences, dtype):
    layer = FACTORIES[kind](3, 4, return_sequences=return_sequences, dtype=dtype)
    params = _random_params(layer.init(jax.random.key(0)), 14)
    inputs = _with_state(kind, jax.random.normal(jax.random.key(15), (3, 5, 3), dtype), 4, 16)
    report = nj.check_layer(layer, inputs, params=params, rtol=TOL[dtype])
    assert report.ok, str(report)
    names = {"grad_x[0]", "grad_x[1][0]", "grad_x[1][1]"} if kind == "lstm" else {
        "grad_x[0]", "grad_x[1]"}  # fmt: skip
    assert names <= set(report.errors)
    dy = jnp.ones((3, 5, 4) if return_sequences else (3, 4), dtype)
    _, (dx, d_state) = layer.backward(params, inputs, dy)
    assert dx.shape == (3, 5, 3)
    assert jax.tree.structure(d_state) == jax.tree.structure(inputs[1])
    assert all(float(jnp.max(jnp.abs(d))) > 0 for d in jax.tree.leaves(d_state))


@pytest.mark.parametrize("kind", FACTORIES)
def test_initial_state_under_jit_and_vmap(kind):
    layer = FACTORIES[kind](3, 4, return_sequences=True, dtype=jnp.float64)
    params = _random_params(layer.init(jax.random.key(0)), 17)
    xs = jax.random.normal(jax.random.key(18), (3, 2, 5, 3), jnp.float64)
    inputs = [_with_state(kind, x, 4, 19 + i) for i, x in enumerate(xs)]
    dys = jax.random.normal(jax.random.key(20), (3, 2, 5, 4), jnp.float64)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *inputs)
    got = jax.jit(jax.vmap(layer.backward, in_axes=(None, 0, 0)))(params, stacked, dys)
    for i in range(3):
        want = jax.vjp(layer.apply, params, inputs[i])[1](dys[i])
        assert rel_err(jax.tree.map(lambda a, i=i: a[i], got), want) <= 1e-10


def test_gru_runs_in_chunks_carrying_its_state():
    """A sequence cut in two, the second half started from the first half's last h, gives the
    whole sequence's outputs (truncated backpropagation through time streams this way)."""
    layer = gru(3, 4, return_sequences=True, dtype=jnp.float64)
    params = _random_params(layer.init(jax.random.key(0)), 21)
    x = jax.random.normal(jax.random.key(22), (2, 8, 3), jnp.float64)
    whole = layer.apply(params, x)
    first = layer.apply(params, x[:, :5])
    second = layer.apply(params, (x[:, 5:], first[:, -1]))
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole, rtol=1e-13)


@pytest.mark.parametrize(
    ("kind", "state", "error", "match"),
    [
        ("lstm", lambda h: (h,), TypeError, r"lstm\(3, 4\): x must be an array or a pair "
         r"\(x, \(h0, c0\)\): the initial state must be \(h0, c0\), got tuple"),
        ("lstm", lambda h: (h, h[:, :3]), ValueError,
         r"lstm\(3, 4\): c0 must have shape \(batch, hidden\) = \(2, 4\), got \(2, 3\)"),
        ("lstm", lambda h: (h, h.astype(jnp.float32)), TypeError,
         r"lstm\(3, 4\): c0 must have x's dtype float64, got float32"),
        ("gru", lambda h: h[None], ValueError,
         r"gru\(3, 4\): h0 must have shape \(batch, hidden\) = \(2, 4\), got \(1, 2, 4\)"),
        ("gru", lambda h: [h], TypeError, r"gru\(3, 4\): h0 must be an array, got list"),
    ],
)  # fmt: skip
def test_bad_initial_states_name_the_layer(kind, state, error, match):
    layer = FACTORIES[kind](3, 4, dtype=jnp.float64)
    params = layer.init(jax.random.key(0))
    x = jnp.zeros((2, 5, 3), jnp.float64)
    with pytest.raises(error, match=match):
        layer.apply(params, (x, state(jnp.zeros((2, 4), jnp.float64))))
    with pytest.raises(TypeError, match=rf"{kind}\(3, 4\): x must be an array or a pair"):
        layer.apply(params, (x, x, x))
