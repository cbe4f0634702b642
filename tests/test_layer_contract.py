"""The layer contract checked at trace time (nnrs_jax.layers.contract): a user layer that returns
the wrong thing is named, with its position in the serial, before anything runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import nnrs_jax as nj

X = jnp.ones((8, 16), jnp.float32)
Y = jnp.zeros((8,), jnp.int32)


def _swish(backward) -> nj.Layer:
    sig = jax.nn.sigmoid
    return nj.Layer(nj.no_params, lambda p, x: x * sig(x), backward, name="swish")


def _scale(backward) -> nj.Layer:
    """A per-feature scale ``y = x * s`` with ``s`` ``(16,)``."""
    return nj.Layer(lambda k: jnp.ones((16,), jnp.float32), lambda p, x: x * p[None, :], backward,
                    name="scale")  # fmt: skip


def _grads(layer: nj.Layer) -> None:
    model = nj.serial(layer, nj.dense(16, 4))
    params = model.init(jax.random.key(0))
    nj.loss_and_grad(model, nj.cross_entropy, params, X, Y)


def test_a_scalar_gradient_for_a_vector_parameter_is_named():
    broken = _scale(lambda p, x, dy: (jnp.sum(dy * x), dy * p[None, :]))
    with pytest.raises(nj.LayerContractError) as err:
        _grads(broken)
    message = str(err.value)
    assert message.startswith("scale: grad_params must have the shape of params (16,), got ()")
    assert message.endswith("[layer 0 of serial(scale, dense(16, 4))]")


def test_an_unsummed_per_feature_gradient_gets_a_hint():
    broken = _scale(lambda p, x, dy: (dy * x, dy * p[None, :]))
    with pytest.raises(nj.LayerContractError, match=r"got \(8, 16\) \(sum a per-feature"):
        _grads(broken)


def test_a_backward_returning_none_is_named():
    with pytest.raises(nj.LayerContractError, match=r"^swish: backward must return a pair "
                       r"\(grad_params, grad_x\), got None \[layer 0 of serial"):  # fmt: skip
        _grads(_swish(lambda p, x, dy: None))


def test_a_wrong_grad_x_is_blamed_on_its_layer_not_the_next():
    with pytest.raises(nj.LayerContractError) as err:
        _grads(_swish(lambda p, x, dy: ((), dy[:, :5])))
    assert str(err.value).startswith("swish: grad_x must have the shape of x (8, 16), got (8, 5)")
    assert "dense" not in str(err.value).split("[")[0]


def test_wrong_structure_and_dtype_are_named():
    as_list = _scale(lambda p, x, dy: ([jnp.sum(dy * x, 0)], dy * p[None, :]))
    with pytest.raises(nj.LayerContractError, match="scale: grad_params must have the tree "):
        _grads(as_list)
    wrong_dtype = _scale(
        lambda p, x, dy: (jnp.sum(dy * x, 0).astype(jnp.bfloat16), dy * p[None, :])
    )
    with pytest.raises(nj.LayerContractError, match=r"dtype of params float32, got bfloat16"):
        _grads(wrong_dtype)
    x_dtype = _swish(lambda p, x, dy: ((), dy.astype(jnp.bfloat16)))
    with pytest.raises(nj.LayerContractError, match=r"grad_x must have the dtype of x float32"):
        _grads(x_dtype)


def test_nested_serials_give_the_whole_path():
    inner = nj.serial(nj.relu(), _swish(lambda p, x, dy: ((), dy[:, :5])))
    model = nj.serial(nj.dense(16, 16), inner)
    params = model.init(jax.random.key(0))
    with pytest.raises(nj.LayerContractError) as err:
        nj.backward(model, params, X, jnp.ones((8, 16), jnp.float32))
    assert str(err.value).endswith(
        "[layer 1 of serial(relu, swish)] [layer 1 of serial(dense(16, 16), serial(relu, swish))]"
    )


def test_context_layer_results_are_checked():
    def forward_y_only(params, x, *, state, key, train):
        return x

    def backward_fn(params, x, grad_y, *, state, key, train):
        return (), grad_y

    layer = nj.Layer.context(nj.no_params, forward_y_only, backward_fn, name="mine")
    with pytest.raises(nj.LayerContractError, match=r"^mine: forward must return a pair "
                       r"\(y, new_state\), got an array of shape \(8, 16\)"):  # fmt: skip
        nj.forward(layer, (), X)

    def forward_bad_state(params, x, *, state, key, train):
        return x, jnp.zeros(3, jnp.float32)

    stateful = nj.Layer.context(nj.no_params, forward_bad_state, backward_fn, name="counter",
                                init_state=lambda: jnp.zeros(2, jnp.float32))  # fmt: skip
    with pytest.raises(nj.LayerContractError, match=r"counter: new_state must have the shape "
                       r"of state \(2,\), got \(3,\)"):  # fmt: skip
        nj.forward(stateful, (), X, state=stateful.init_state())


def test_the_checks_run_at_trace_time_under_jit():
    broken = _scale(lambda p, x, dy: (jnp.sum(dy * x), dy * p[None, :]))
    model = nj.serial(broken, nj.dense(16, 4))
    step = nj.make_train_step(model, nj.cross_entropy, nj.sgd(0.1))
    params = model.init(jax.random.key(0))
    with pytest.raises(nj.LayerContractError, match=r"^scale: "):
        step(params, nj.sgd(0.1).init(params), X, Y)


class _ModuleLike:
    """Stands for a module of another library: callable, with its own init and apply."""

    def init(self, key, x):
        return {}

    def apply(self, variables, x):
        return x

    def __call__(self, x):
        return x


@pytest.mark.parametrize(
    "model", [_ModuleLike(), lambda x: x, nj.relu], ids=["module", "fn", "factory"]
)
def test_a_model_that_is_not_a_layer_points_to_the_guide(model):
    for call in (
        lambda: nj.fit(model, nj.cross_entropy, nj.adam(1e-3), X, Y, key=jax.random.key(0)),
        lambda: nj.TrainState.create(model, nj.adam(1e-3), jax.random.key(0)),
        lambda: nj.evaluate(model, (), X, Y),
        lambda: nj.make_train_step(model, nj.cross_entropy, nj.sgd(0.1)),
        lambda: nj.loss_and_grad(model, nj.cross_entropy, (), X, Y),
        lambda: nj.serial(nj.dense(16, 4), model),
    ):
        with pytest.raises(TypeError, match=r"must be a Layer .*docs/layers\.md"):
            call()


def test_the_factory_hint_names_the_call():
    with pytest.raises(TypeError, match=r"did you forget to call the factory"):
        nj.fit(nj.relu, nj.cross_entropy, nj.adam(1e-3), X, Y, key=jax.random.key(0))


def _gated(backward) -> nj.Layer:
    """A layer of two inputs, ``(x, keep)``: ``y = x`` where ``keep``, else 0."""
    return nj.Layer(nj.no_params, lambda p, xk: jnp.where(xk[1], xk[0], 0.0), backward,
                    name="gated")  # fmt: skip


@pytest.mark.parametrize(
    ("backward", "match"),
    [
        (lambda p, xk, dy: ((), dy), r"gated: grad_x must be a tuple of 2 entries like x, got "
         r"an array"),
        (lambda p, xk, dy: ((), (dy[:, :3], None)), r"gated: grad_x\[0\] must have the shape and "
         r"dtype of x\[0\] \(8, 16\) float32, got an array of shape \(8, 3\)"),
        (lambda p, xk, dy: ((), (dy, jnp.zeros((8, 16)))), r"gated: grad_x\[1\] must be None "
         r"\(x\[1\] is not floating\), got an array"),
    ],
)  # fmt: skip
def test_a_layer_of_several_inputs_returns_their_gradients_like_x(backward, match):
    keep = X > 0
    with pytest.raises(nj.LayerContractError, match=match):
        _gated(backward).backward((), (X, keep), X)
    good = _gated(lambda p, xk, dy: ((), (jnp.where(xk[1], dy, 0.0), None)))
    assert nj.check_layer(good, (X, keep)).ok
