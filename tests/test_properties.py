"""Properties that must hold for all shapes and values, checked on random examples (hypothesis).

Layer output shapes and dtypes, ``backward`` gradient trees equal to the params trees,
cross-entropy ``>= 0`` and ``= log(classes)`` for zero logits, optimizer states that keep their
structure, shapes and dtypes, and the hyperparameter rule: NumPy scalars accepted wherever a
Python number is, ``inf`` and ``NaN`` rejected, `TypeError` for a wrong type, `ValueError` for a
wrong value. Float64 examples run only with x64 on (see conftest.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnrs_jax as nj

FAST = settings(max_examples=25, deadline=None, database=None)
DTYPES = [jnp.float32, jnp.float64] if jax.config.read("jax_enable_x64") else [jnp.float32]
dtypes = st.sampled_from(DTYPES)
sizes = st.integers(1, 9)
ACTIVATIONS: dict[str, Callable[[], nj.Layer]] = {
    "relu": nj.relu,
    "leaky_relu": nj.leaky_relu,
    "elu": nj.elu,
    "selu": nj.selu,
    "tanh": nj.tanh,
    "sigmoid": nj.sigmoid,
    "softmax": nj.softmax,
}
OPTIMIZERS: dict[str, Callable[[float], nj.Optimizer]] = {
    "sgd": nj.sgd,
    "momentum": nj.momentum,
    "nesterov": nj.nesterov,
    "rmsprop": nj.rmsprop,
    "adam": nj.adam,
    "nadam": nj.nadam,
    "adamax": nj.adamax,
}


def _struct(shape: tuple[int, ...], dtype) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))


def assert_same_tree(got, want) -> None:
    """Same tree structure, and leaf by leaf the same shape and dtype."""
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)


# Shapes, dtypes and trees are static: `jax.eval_shape` traces the layer's own code (its
# trace-time checks included) without compiling, so each example costs milliseconds.
def _shapes(layer: nj.Layer, x: jax.ShapeDtypeStruct):
    params = jax.eval_shape(layer.init, jax.random.key(0))
    y = jax.eval_shape(layer.apply, params, x)
    grads, grad_x = jax.eval_shape(layer.backward, params, x, y)
    return params, y, grads, grad_x


@FAST
@given(batch=sizes, d_in=sizes, d_out=sizes, dtype=dtypes)
def test_dense_shapes_and_gradient_tree(batch, d_in, d_out, dtype) -> None:
    x = _struct((batch, d_in), dtype)
    params, y, grads, grad_x = _shapes(nj.dense(d_in, d_out, dtype=dtype), x)
    assert_same_tree(
        params, nj.DenseParams(_struct((d_in, d_out), dtype), _struct((d_out,), dtype))
    )
    assert (y.shape, y.dtype) == ((batch, d_out), dtype)
    assert_same_tree(grads, params)
    assert_same_tree(grad_x, x)


@FAST
@given(
    name=st.sampled_from(sorted(ACTIVATIONS)),
    shape=st.lists(sizes, min_size=1, max_size=4).map(tuple),
    dtype=dtypes,
)
def test_activations_keep_any_shape(name, shape, dtype) -> None:
    x = _struct(shape, dtype)
    params, y, grads, grad_x = _shapes(ACTIVATIONS[name](), x)
    assert params == () == grads
    assert_same_tree(y, x)
    assert_same_tree(grad_x, x)


@FAST
@given(
    widths=st.lists(sizes, min_size=2, max_size=5),
    activation=st.sampled_from(sorted(set(ACTIVATIONS) - {"softmax"})),
    batch=sizes,
    dtype=dtypes,
)
def test_serial_gradient_tree_equals_params_tree(widths, activation, batch, dtype) -> None:
    layers: list[nj.Layer] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(widths)):
        layers += [ACTIVATIONS[activation]()] if i else []
        layers.append(nj.dense(d_in, d_out, dtype=dtype, regularizer=nj.l2(0.1)))
    model = nj.serial(*layers)
    x = _struct((batch, widths[0]), dtype)
    params, y, grads, grad_x = _shapes(model, x)
    assert len(params) == len(layers)
    assert (y.shape, y.dtype) == ((batch, widths[-1]), dtype)
    assert_same_tree(grads, params)
    assert_same_tree(grad_x, x)
    _, penalty_grads = jax.eval_shape(model.penalty, params)
    assert_same_tree(penalty_grads, params)


# The values of the loss are computed, jitted: one compilation per shape, so the shapes come
# from a few sizes and the examples vary the values.
_ce_value = jax.jit(nj.cross_entropy.value)
few_batches = st.sampled_from([1, 7])


@FAST
@given(
    logits=hnp.arrays(
        np.float64,
        st.tuples(few_batches, st.sampled_from([2, 10])),
        elements=st.floats(-1e4, 1e4, allow_nan=False),
    ),
    dtype=dtypes,
    data=st.data(),
)
def test_cross_entropy_is_never_negative(logits, dtype, data) -> None:
    batch, classes = logits.shape
    labels = jnp.asarray(
        data.draw(hnp.arrays(np.int32, (batch,), elements=st.integers(0, classes - 1)))
    )
    z = jnp.asarray(logits, dtype)
    value = _ce_value(z, labels)
    assert value.dtype == dtype and math.isfinite(float(value))
    assert float(value) >= 0
    assert float(_ce_value(z, jax.nn.one_hot(labels, classes, dtype=dtype))) >= 0


@FAST
@given(
    batch=few_batches,
    classes=st.sampled_from([2, 3, 10, 100]),
    dtype=dtypes,
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_of_zero_logits_is_log_classes(batch, classes, dtype, seed) -> None:
    labels = np.random.default_rng(seed).integers(0, classes, batch).astype(np.int32)
    value = _ce_value(jnp.zeros((batch, classes), dtype), jnp.asarray(labels))
    rtol = 1e-12 if dtype == jnp.float64 else 1e-6
    assert float(value) == pytest.approx(math.log(classes), rel=rtol)


param_trees = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.tuples(st.lists(sizes, max_size=3).map(tuple), dtypes).map(lambda s: _struct(*s)),
    min_size=1,
)


@FAST
@given(name=st.sampled_from(sorted(OPTIMIZERS)), params=param_trees)
def test_optimizer_state_keeps_shapes_and_dtypes(name, params) -> None:
    optimizer = OPTIMIZERS[name](1e-2)
    state = jax.eval_shape(optimizer.init, params)
    assert (state.timestep.shape, state.timestep.dtype) == ((), jnp.int32)
    for field in ("velocity", "scaling_factor"):
        if hasattr(state, field):
            assert_same_tree(getattr(state, field), params)
    for _ in range(2):
        updates, new_state = jax.eval_shape(optimizer.update, params, state, params)
        assert_same_tree(updates, params)
        assert type(new_state) is type(state)
        assert_same_tree(new_state, state)
        state = new_state


# The hyperparameter rule, for the factories outside the optimizers that take a float. Each
# entry: the factory of one argument, and what of its result two equal settings must share.
def _schedule_values(schedule: Callable) -> list[float]:
    return [float(schedule(t)) for t in (1, 5)]


FLOAT_ARGS: dict[str, tuple[Callable[[object], object], Callable[[object], object]]] = {
    "l1": (nj.l1, tuple),
    "l2": (nj.l2, tuple),
    "elastic_net l1": (lambda v: nj.elastic_net(v, 0.0), tuple),
    "elastic_net l2": (lambda v: nj.elastic_net(0.0, v), tuple),
    "elu": (nj.elu, lambda layer: layer.name),
    "leaky_relu": (nj.leaky_relu, lambda layer: layer.name),
    "constant": (nj.schedules.constant, _schedule_values),
    "cosine_decay": (lambda v: nj.schedules.cosine_decay(v, 10), _schedule_values),
    "exponential_decay": (lambda v: nj.schedules.exponential_decay(1.0, v, 10), _schedule_values),
}
float_args = st.sampled_from(sorted(FLOAT_ARGS))
as_numpy = st.sampled_from([float, np.float64, np.float32])


@FAST
@given(arg=float_args, value=st.floats(1e-30, 1e6), kind=as_numpy)
def test_numpy_scalars_are_accepted_like_python_floats(arg, value, kind) -> None:
    factory, observe = FLOAT_ARGS[arg]
    value = kind(value)
    assert observe(factory(value)) == observe(factory(float(value)))


@FAST
@given(
    arg=float_args,
    value=st.one_of(st.floats(-1e30, -1e-30), st.sampled_from([math.inf, math.nan])),
    kind=as_numpy,
)
def test_negative_inf_and_nan_raise_value_error(arg, value, kind) -> None:
    factory, _ = FLOAT_ARGS[arg]
    with pytest.raises(ValueError, match=rf"^{arg.split()[0]}: \w+ must be a finite float"):
        factory(kind(value))


@FAST
@given(arg=float_args, value=st.sampled_from(["0.1", None, True, [0.1], 1j]))
def test_wrong_types_raise_type_error(arg, value) -> None:
    factory, _ = FLOAT_ARGS[arg]
    with pytest.raises(TypeError, match=rf"^{arg.split()[0]}: \w+ must be a float, got "):
        factory(value)


@FAST
@given(
    d_in=st.integers(1, 64),
    d_out=st.integers(1, 64),
    kind=st.sampled_from([int, np.int64, np.int32, np.uint8]),
)
def test_dense_accepts_numpy_integers(d_in, d_out, kind) -> None:
    layer = nj.dense(kind(d_in), kind(d_out))
    assert layer.name == f"dense({d_in}, {d_out})"
    assert jax.eval_shape(layer.init, jax.random.key(0)).w.shape == (d_in, d_out)


@FAST
@given(value=st.one_of(st.integers(max_value=0), st.floats(), st.sampled_from(["3", None, True])))
def test_dense_rejects_what_is_not_a_positive_int(value) -> None:
    error = ValueError if isinstance(value, int) and not isinstance(value, bool) else TypeError
    with pytest.raises(error, match=r"^dense: in_dim must be an int"):
        nj.dense(value, 2)
