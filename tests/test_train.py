"""make_train_step and fit: manual = autodiff, no retracing, resume, errors, the seed's run."""

from __future__ import annotations

import itertools

import chex
import jax
import numpy as np
import pytest
from helpers import assert_trees_equal, toy_classes

import nnrs_jax as nj

EN = nj.elastic_net(1e-4, 1e-4)


def seed_model() -> nj.Layer:
    """The seed's headline model: 784-64-32-16-10, He, elastic net 1e-4, ELU."""
    return nj.serial(
        nj.dense(784, 64, init="he", regularizer=EN), nj.elu(1.0),
        nj.dense(64, 32, init="he", regularizer=EN), nj.elu(1.0),
        nj.dense(32, 16, init="he", regularizer=EN), nj.elu(1.0),
        nj.dense(16, 10, init="he", regularizer=EN),
    )  # fmt: skip


def small_model() -> nj.Layer:
    return nj.serial(nj.dense(6, 8, regularizer=EN), nj.elu(), nj.dense(8, 3, regularizer=EN))


@pytest.fixture
def toy():
    return toy_classes(96)


def counted(loss: nj.Loss) -> nj.Loss:
    """The same loss whose value may be traced only once (``chex.assert_max_traces``).

    chex keys its counters by where the function is defined, so parametrized tests share them:
    start from zero.
    """
    chex.clear_trace_counter()
    return loss._replace(value=chex.assert_max_traces(lambda o, t: loss.value(o, t), n=1))


def test_manual_and_autodiff_train_identically(mnist_train):
    x, y = mnist_train[0][:2000], mnist_train[1][:2000]
    model, opt = seed_model(), nj.nadam(5e-4)
    runs = {}
    for grads in ("manual", "autodiff"):
        step = nj.make_train_step(model, nj.cross_entropy, opt, grads=grads)
        params = model.init(jax.random.key(0))
        state = opt.init(params)
        for _ in range(20):
            params, state, metrics = step(params, state, x, y)
        runs[grads] = params, metrics
    chex.assert_trees_all_close(runs["manual"][0], runs["autodiff"][0], atol=1e-5, rtol=0)
    assert float(runs["manual"][1]["loss"]) == pytest.approx(float(runs["autodiff"][1]["loss"]))


def test_step_compiles_once(toy):
    x, y = toy
    model, opt = small_model(), nj.adam(1e-2)
    step = nj.make_train_step(model, counted(nj.cross_entropy), opt)
    params = model.init(jax.random.key(0))
    state = opt.init(params)
    for _ in range(3):
        params, state, metrics = step(params, state, x, y)
    assert int(state.timestep) == 3 and set(metrics) == {"loss", "accuracy"}


def test_fit_epochs_compile_once_and_learn(toy):
    x, y = toy
    result = nj.fit(
        small_model(), counted(nj.cross_entropy), nj.adam(1e-2), x, y,
        key=jax.random.key(1), epochs=60, batch_size=16, progress=False,
    )  # fmt: skip
    h = result.history
    np.testing.assert_array_equal(h["epoch"], np.arange(60))
    assert int(result.opt_state.timestep) == 60 * 6
    assert h["loss"][-1] < 0.5 * h["loss"][0] and h["accuracy"][-1] > 0.9


def test_full_batch_history_and_eval(toy):
    x, y = toy
    result = nj.fit(
        small_model(), nj.cross_entropy, nj.sgd(0.5), x, y, key=jax.random.key(0),
        steps=25, log_every=10, eval_data=(x, y), progress=False,
    )  # fmt: skip
    h = result.history
    np.testing.assert_array_equal(h["step"], np.arange(25))
    np.testing.assert_array_equal(h["eval_step"], [10, 20, 25])
    assert h["loss"].shape == h["accuracy"].shape == (25,)
    assert np.all(np.diff(h["loss"]) < 0)
    # Evaluating after the last step equals the metrics the model reports for its final params.
    report = nj.evaluate(small_model(), result.params, x, y)
    assert h["eval_accuracy"][-1] == pytest.approx(report.accuracy)


def test_partial_last_batch(toy):
    x, y = toy[0][:90], toy[1][:90]
    kept = nj.fit(small_model(), nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0),
                  epochs=2, batch_size=16, drop_last=False, progress=False)  # fmt: skip
    dropped = nj.fit(small_model(), nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0),
                     epochs=2, batch_size=16, progress=False)  # fmt: skip
    assert int(kept.opt_state.timestep) == 12 and int(dropped.opt_state.timestep) == 10


@pytest.mark.parametrize("mode", ["full", "epochs"])
def test_resume_is_bit_exact(toy, tmp_path, mode):
    x, y = toy
    model, opt, key = small_model(), nj.nadam(1e-2), jax.random.key(3)
    run = {"steps": 7} if mode == "full" else {"epochs": 2, "batch_size": 16}
    twice = {"steps": 14} if mode == "full" else {"epochs": 4, "batch_size": 16}
    straight = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **twice)
    first = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **run)
    nj.save(tmp_path / "ckpt.npz", first.params, first.opt_state)
    loaded = nj.load(tmp_path / "ckpt.npz", params=first.params, opt_state=first.opt_state)
    second = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False,
                    params=loaded.params, opt_state=loaded.opt_state, **run)  # fmt: skip
    assert_trees_equal(second.params, straight.params)
    assert_trees_equal(second.opt_state, straight.opt_state)


def test_fit_does_not_consume_given_params(toy):
    x, y = toy
    model = small_model()
    params = model.init(jax.random.key(0))
    before = jax.tree.map(np.asarray, params)
    nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0), steps=2,
           params=params, progress=False)  # fmt: skip
    assert_trees_equal(params, before)


def test_non_finite_loss_names_the_step(toy):
    x, y = toy
    x = x * 1e3
    kwargs = dict(key=jax.random.key(0), steps=30, progress=False)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        warned = nj.fit(small_model(), nj.mse, nj.sgd(1e3), x, y, on_nonfinite="warn", **kwargs)
    first_bad = int(np.argmin(np.isfinite(warned.history["loss"])))
    assert first_bad > 0
    with pytest.raises(FloatingPointError, match=rf"non-finite loss at step {first_bad};"):
        nj.fit(small_model(), nj.mse, nj.sgd(1e3), x, y, **kwargs)


def test_non_finite_loss_in_an_epoch_names_a_step_of_that_epoch(toy):
    x, y = toy[0] * 1e3, toy[1]
    kwargs = dict(key=jax.random.key(0), epochs=5, batch_size=16, progress=False)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        warned = nj.fit(small_model(), nj.mse, nj.sgd(1e3), x, y, on_nonfinite="warn", **kwargs)
    bad_epoch = int(np.argmin(np.isfinite(warned.history["loss"])))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step (\d+);") as error:
        nj.fit(small_model(), nj.mse, nj.sgd(1e3), x, y, **kwargs)
    step = int(str(error.value).split("step ")[1].split(";")[0])
    assert 6 * bad_epoch <= step < 6 * (bad_epoch + 1)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda x, y: (x, y + 2), ValueError, r"\[0, 3\).*\[2, 4\]"),
        (lambda x, y: (x, y[:-1]), ValueError, "same length.*96.*95"),
        (lambda x, y: (x[:0], y[:0]), ValueError, "empty"),
        (lambda x, y: (np.where(np.arange(96)[:, None] == 5, np.nan, x), y), ValueError, "row 5"),
        (lambda x, y: (x, y.astype(np.float32)), TypeError, "integer"),
        (lambda x, y: (x[:, :5], y), ValueError, "6.*5"),
    ],
    ids=["labels", "length", "empty", "nan", "label_dtype", "features"],
)
def test_bad_data_fails_before_training(toy, change, error, match):
    x, y = change(*toy)
    with pytest.raises(error, match=match):
        nj.fit(small_model(), nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0),
               steps=1, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "steps"),
        ({"steps": 3, "epochs": 1}, "steps"),
        ({"epochs": 1, "batch_size": 0}, "batch_size"),
        ({"epochs": 1, "batch_size": 1000}, "larger"),
        ({"steps": -1}, "steps"),
        ({"steps": 1, "grads": "numeric"}, "grads"),
    ],
)
def test_bad_arguments(toy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nj.fit(small_model(), nj.cross_entropy, nj.sgd(0.1), *toy, key=jax.random.key(0),
               progress=False, **kwargs)  # fmt: skip


@pytest.mark.slow
def test_seed_headline_run(mnist_train, mnist_test):
    """The seed's run (iterations 0..=150, full batch) reaches >= 90.4 % test accuracy."""
    x, y = mnist_train
    result = nj.fit(seed_model(), nj.cross_entropy, nj.nadam(5e-4), x, y,
                    key=jax.random.key(0), steps=151, progress=False)  # fmt: skip
    assert result.history["loss"][-1] < result.history["loss"][0]
    report = nj.evaluate(seed_model(), result.params, *mnist_test)
    assert report.accuracy >= 0.904, str(report)


@pytest.mark.slow
def test_one_minibatch_epoch(mnist_train, mnist_test):
    x, y = mnist_train
    result = nj.fit(seed_model(), nj.cross_entropy, nj.adam(1e-3), x, y,
                    key=jax.random.key(0), epochs=1, batch_size=128, progress=False)  # fmt: skip
    assert int(result.opt_state.timestep) == 60000 // 128
    assert nj.evaluate(seed_model(), result.params, *mnist_test).accuracy >= 0.9


def test_fit_many_matches_separate_runs(toy):
    x, y = toy
    model, key = small_model(), jax.random.key(5)
    lrs = np.array([1e-2, 3e-2, 1e-1], np.float32)
    many = nj.fit_many(model, nj.cross_entropy, lambda lr: nj.nadam(lr), x, y, key=key,
                       hparams=lrs, epochs=3, batch_size=32, progress=False)  # fmt: skip
    assert many.history["loss"].shape == (3, 3)
    init_keys = jax.random.split(jax.random.split(key)[0], 3)
    for i, lr in enumerate(lrs):
        params = model.init(init_keys[i])
        one = nj.fit(model, nj.cross_entropy, nj.nadam(float(lr)), x, y, key=key, params=params,
                     epochs=3, batch_size=32, progress=False)  # fmt: skip
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], many.params), one.params, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(many.history["loss"][:, i], one.history["loss"], rtol=1e-5)


def test_fit_many_seeds_full_batch(toy):
    x, y = toy
    many = nj.fit_many(small_model(), nj.cross_entropy, nj.sgd(0.3), x, y,
                       key=jax.random.key(0), num_models=4, steps=5, progress=False)  # fmt: skip
    assert many.history["loss"].shape == (5, 4)
    first = many.history["loss"][0]
    assert len(set(np.round(first, 6))) == 4  # different initialisations
    assert np.all(many.history["loss"][-1] < first)
    with pytest.raises(TypeError, match="hparam"):
        nj.fit_many(small_model(), nj.cross_entropy, nj.sgd(0.3), x, y, key=jax.random.key(0),
                    hparams=np.ones(2, np.float32), steps=1, progress=False)  # fmt: skip


def test_compiled_step_does_each_product_once():
    """XLA merges backward's forward with apply's and drops the first layer's unused dx."""
    from nnrs_jax.train.step import step_body as _step_body

    sizes, batch = [784, 64, 32, 16, 10], 1000
    model, opt = seed_model(), nj.nadam(5e-4)
    params = model.init(jax.random.key(0))
    x, y = np.zeros((batch, 784), np.float32), np.zeros(batch, np.int32)
    args = (params, model.init_state(), opt.init(params), x, y, jax.random.key(1))
    cost = jax.jit(_step_body(model, nj.cross_entropy, opt, "manual")).lower(*args).compile()
    cost = cost.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    macs = sum(a * b for a, b in itertools.pairwise(sizes))
    # forward + dW for every layer, dx for all layers but the first; element-wise work is small.
    products = 2 * batch * (2 * macs + macs - 784 * 64)
    assert products <= flops <= 1.05 * products


@pytest.mark.parametrize("mode", [{"steps": 3}, {"epochs": 2, "batch_size": 16}])
def test_fit_again_reuses_the_compiled_step(toy, mode):
    """Resuming with the same model, loss and optimizer must not trace the step again."""
    x, y = toy
    model, loss, opt = small_model(), counted(nj.cross_entropy), nj.adam(1e-2)
    first = nj.fit(model, loss, opt, x, y, key=jax.random.key(0), progress=False, **mode)
    again = nj.fit(model, loss, opt, x, y, key=jax.random.key(0), progress=False,
                   params=first.params, opt_state=first.opt_state, **mode)  # fmt: skip
    assert int(again.opt_state.timestep) == 2 * int(first.opt_state.timestep)


@pytest.mark.parametrize("mode", [{"steps": 2}, {"epochs": 1, "batch_size": 16}])
def test_fit_with_an_equal_new_optimizer_reuses_the_compiled_step(toy, mode):
    """A notebook cell run twice builds a new but equal optimizer: no new trace."""
    x, y = toy
    model, loss = small_model(), counted(nj.cross_entropy)
    for _ in range(2):
        nj.fit(model, loss, nj.adam(1e-3), x, y, key=jax.random.key(0), progress=False, **mode)


@pytest.mark.parametrize("mode", [{"steps": 2}, {"epochs": 1, "batch_size": 16}])
def test_fit_many_again_reuses_the_compiled_step(toy, mode):
    """New lambdas and new learning rates are arguments of one compiled step."""
    x, y = toy
    model, loss = small_model(), counted(nj.cross_entropy)
    runs = []
    for lrs in ([1e-2, 3e-2], [2e-2, 5e-2], [1e-2, 3e-2]):
        hparams = np.array(lrs, np.float32)
        runs.append(nj.fit_many(model, loss, lambda lr: nj.adam(lr), x, y, hparams=hparams,
                                key=jax.random.key(0), progress=False, **mode))  # fmt: skip
    assert_trees_equal(runs[0].params, runs[2].params)
    first_w = runs[0].params[0].w
    assert not np.array_equal(np.asarray(first_w), np.asarray(runs[1].params[0].w))


def test_evaluate_again_reuses_the_compiled_code(toy):
    x, y = toy
    model, loss = small_model(), counted(nj.cross_entropy)
    params = model.init(jax.random.key(0))
    reports = [nj.evaluate(model, params, x, y, loss, batch_size=40) for _ in range(3)]
    assert reports[0].loss == reports[2].loss


def closure_sgd(learning_rate):
    """SGD written as closures: equal settings do not make equal objects."""

    def init(params):
        return ()

    def update(grads, state, params=None):
        return jax.tree.map(lambda g: -learning_rate * g, grads), state

    return nj.Optimizer(init, update)


def test_fit_many_traces_an_optimizer_it_cannot_describe(toy):
    """Closures differ from model to model, so the function itself is traced on hparams[i]."""
    x, y = toy
    lrs = np.array([0.1, 0.3], np.float32)
    runs = []
    for make in (closure_sgd, lambda lr: nj.sgd(lr)):
        runs.append(nj.fit_many(small_model(), nj.cross_entropy, make, x, y, hparams=lrs,
                                key=jax.random.key(3), steps=4, progress=False))  # fmt: skip
    chex.assert_trees_all_close(runs[0].params, runs[1].params, rtol=1e-6, atol=1e-7)
