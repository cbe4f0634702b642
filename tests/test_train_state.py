"""fit and make_train_step with model state, per-step keys and any (init, update) optimizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal, toy_classes

import nnrs_jax as nj
from nnrs_jax.layers.dense import Pretransposed


@pytest.fixture
def toy():
    return toy_classes(96)


def noisy_model() -> nj.Layer:
    """Dense, batch norm and dropout: every kind of layer the step threads state or keys to."""
    return nj.serial(
        nj.dense(6, 16), nj.relu(), nj.batch_norm(16), nj.dropout(0.25),
        nj.residual(nj.serial(nj.dense(16, 16), nj.tanh())), nj.dense(16, 3),
    )  # fmt: skip


def test_fit_returns_the_trained_state_and_step_count(toy):
    x, y = toy
    model = noisy_model()
    result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                    epochs=3, batch_size=16, progress=False)  # fmt: skip
    assert result.step == 3 * (96 // 16)
    bn = result.state[2]
    assert isinstance(bn, nj.BatchNormState)
    # The running statistics moved away from their initial (0, 1).
    assert float(jnp.max(jnp.abs(bn.mean))) > 1e-3
    assert float(jnp.max(jnp.abs(bn.var - 1))) > 1e-3
    report = nj.evaluate(model, result.params, x, y, state=result.state)
    assert report.accuracy > 0.6


@pytest.mark.parametrize("mode", [{"steps": 4}, {"epochs": 2, "batch_size": 16}])
def test_resume_with_dropout_and_batch_norm_is_bit_exact(toy, tmp_path, mode):
    """N steps, save, load, N more == 2N straight: same masks (keys by step), same state."""
    x, y = toy
    model, opt, key = noisy_model(), nj.adam(1e-2), jax.random.key(3)
    double = {k: 2 * v if k in ("steps", "epochs") else v for k, v in mode.items()}
    straight = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **double)
    half = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **mode)
    path = tmp_path / "half.npz"
    nj.save(path, half.params, half.opt_state, step=half.step, state=half.state)
    ckpt = nj.load(path, params=half.params, opt_state=half.opt_state, state=model.init_state())
    resumed = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False,
                     params=ckpt.params, opt_state=ckpt.opt_state, state=ckpt.state,
                     step=ckpt.step, **mode)  # fmt: skip
    assert resumed.step == straight.step
    assert_trees_equal(resumed.params, straight.params)
    assert_trees_equal(resumed.state, straight.state)
    assert_trees_equal(resumed.opt_state, straight.opt_state)


def test_dropout_masks_differ_from_step_to_step(toy):
    """Each step's key is fold_in(noise_key, step): two steps of the same batch differ."""
    x, y = toy
    model = nj.serial(nj.dense(6, 32), nj.dropout(0.5), nj.dense(32, 3))
    sgd = nj.sgd(1e-30)  # updates too small to matter: only the masks change the loss
    result = nj.fit(model, nj.cross_entropy, sgd, x, y, key=jax.random.key(0), steps=3,
                    log_every=1, progress=False)  # fmt: skip
    losses = result.history["loss"]
    assert len(set(np.round(losses, 6).tolist())) == 3


def test_training_a_stochastic_model_without_keys_is_a_clear_error(toy):
    x, y = toy
    model = nj.serial(nj.dense(6, 8), nj.dropout(0.5), nj.dense(8, 3))
    params = model.init(jax.random.key(0))
    opt = nj.adam(1e-2)
    step = nj.make_train_step(model, nj.cross_entropy, opt)
    with pytest.raises(TypeError, match=r"dropout\(0\.5\): training needs a PRNG key"):
        step(params, opt.init(params), jnp.asarray(x), jnp.asarray(y))
    params, _, metrics = step(params, opt.init(params), x, y, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))


def test_make_train_step_with_state_threads_the_state(toy):
    x, y = toy
    model, opt = nj.serial(nj.dense(6, 8), nj.batch_norm(8), nj.dense(8, 3)), nj.adam(1e-2)
    with pytest.raises(ValueError, match="with_state=True"):
        nj.make_train_step(model, nj.cross_entropy, opt)
    step = nj.make_train_step(model, nj.cross_entropy, opt, with_state=True)
    params = model.init(jax.random.key(0))
    state, opt_state = model.init_state(), opt.init(params)
    params, new_state, opt_state, metrics = step(params, state, opt_state, x, y)
    # momentum 0.9: the running mean is 0.1 × the batch mean of the first layer's output.
    h = x @ np.asarray(model.init(jax.random.key(0))[0].w)
    np.testing.assert_allclose(new_state[1].mean, 0.1 * h.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert sorted(metrics) == ["accuracy", "loss"]


def test_a_user_written_layer_first_trains_in_full_batch_and_mini_batch(toy):
    """A plain layer of the user's, first in serial: no dense-only input reaches it."""
    x, y = toy
    double = nj.Layer(lambda key: (), lambda p, x: 2.0 * x, lambda p, x, g: ((), 2.0 * g))
    model = nj.serial(double, nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    for mode in ({"steps": 2}, {"epochs": 2, "batch_size": 32}):
        result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                        progress=False, **mode)  # fmt: skip
        assert np.all(np.isfinite(result.history["loss"]))


def test_prepare_is_only_used_where_it_applies(toy):
    x, _ = toy
    assert isinstance(nj.serial(nj.dense(6, 3)).prepare(jnp.asarray(x)), Pretransposed)
    plain = nj.serial(nj.relu(), nj.dense(6, 3)).prepare(jnp.asarray(x))
    assert isinstance(plain, jax.Array) and plain.shape == x.shape


def test_image_shaped_inputs_train_and_evaluate():
    """(N, H, W, C) inputs go through fit, evaluate and the output-shape helper."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    features = nj.serial(nj.conv2d(1, 4, 3), nj.relu(), nj.max_pool(2), nj.flatten())
    size = nj.output_shape(features, (1, 8, 8, 1))[-1]
    model = nj.serial(features, nj.dense(size, 2))
    result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                    epochs=5, batch_size=16, progress=False)  # fmt: skip
    assert nj.evaluate(model, result.params, x, y).accuracy > 0.7


def test_a_chain_without_timestep_trains_and_resumes_with_step(toy):
    """fit counts steps itself: any (init, update) pair trains; resume takes step=."""
    x, y = toy
    model = nj.serial(nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    opt = nj.chain(nj.clip_by_global_norm(1.0), nj.scale_by_adam(), nj.scale_by_learning_rate(1e-2))
    key, mode = jax.random.key(0), {"epochs": 1, "batch_size": 16}
    straight = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False,
                      epochs=2, batch_size=16)  # fmt: skip
    half = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **mode)
    with pytest.raises(ValueError, match=r"pass step=result\.step"):
        nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False,
               params=half.params, opt_state=half.opt_state, **mode)  # fmt: skip
    resumed = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **mode,
                     params=half.params, opt_state=half.opt_state, step=half.step)  # fmt: skip
    assert_trees_equal(resumed.params, straight.params)


def test_optax_adam_trains_like_nj_adam(toy):
    """An optax (init, update) pair trains through fit to nj.adam's parameters (same eps)."""
    optax = pytest.importorskip("optax")
    x, y = toy
    x = x.astype(np.float64)
    model = nj.serial(
        nj.dense(6, 8, dtype=jnp.float64), nj.elu(), nj.dense(8, 3, dtype=jnp.float64)
    )
    key, mode = jax.random.key(0), {"epochs": 5, "batch_size": 16}
    ours = nj.fit(model, nj.cross_entropy, nj.adam(1e-2, eps=1e-7), x, y, key=key,
                  progress=False, **mode)  # fmt: skip
    # optax mixes weakly typed constants in ways the suite's strict promotion refuses.
    with jax.numpy_dtype_promotion("standard"):
        theirs = nj.fit(model, nj.cross_entropy, optax.adam(1e-2, eps=1e-7), x, y, key=key,
                        progress=False, **mode)  # fmt: skip
    assert theirs.step == ours.step == 30
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(theirs.params))
    )
    assert diff < 1e-12, diff


@pytest.mark.parametrize(
    "make",
    [lambda: nj.nadam(5e-4), lambda: nj.momentum(0.1), lambda: nj.rmsprop(1e-3),
     lambda: nj.chain(nj.clip_by_global_norm(1.0), nj.adam(1e-3))],
    ids=["nadam", "momentum", "rmsprop", "chain"],
)  # fmt: skip
def test_the_compiled_optimizer_init_equals_the_optimizers_own(make):
    """`fit` and `TrainState.create` run ``optimizer.init`` as one compiled program (one per
    equal optimizer); the state is the one ``optimizer.init`` gives op by op, leaf for leaf."""
    from nnrs_jax.train.state import _compiled_opt_init

    model, opt = noisy_model(), make()
    ts = nj.TrainState.create(model, opt, jax.random.key(0))
    want = opt.init(ts.params)
    assert jax.tree.structure(ts.opt_state) == jax.tree.structure(want)
    for got, expected in zip(jax.tree.leaves(ts.opt_state), jax.tree.leaves(want), strict=True):
        assert got.dtype == expected.dtype and got.shape == expected.shape
    assert_trees_equal(ts.opt_state, want)
    assert _compiled_opt_init(make()) is _compiled_opt_init(opt)  # equal optimizers share it


@pytest.mark.parametrize("make", [noisy_model, nj.recipes.fast], ids=["noisy", "fast"])
def test_the_compiled_init_equals_the_default_compilation_bit_for_bit(make):
    """`fit` compiles ``model.init`` with `INIT_COMPILER_OPTIONS` on the CPU (a faster compile);
    the parameters are those of ``jax.jit(model.init)`` with XLA's defaults, bit for bit."""
    from nnrs_jax.train.state import _compiled_init, init_params, run_keys

    model, key = make(), jax.random.key(7)
    got = init_params(model, key)
    want = jax.jit(model.init)(run_keys(key)[0])
    assert_trees_equal(got, want)
    assert _compiled_init(make()) is _compiled_init(model)  # equal models share it
