"""fit's open loop: TrainState, make_epoch, in-graph augment and metrics, regression,
validation, Ctrl-C, and errors that name the function called."""

from __future__ import annotations

import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal, toy_classes

import nnrs_jax as nj


@pytest.fixture
def toy():
    return toy_classes(100)


def noisy() -> nj.Layer:
    return nj.serial(nj.dense(6, 16), nj.relu(), nj.batch_norm(16), nj.dropout(0.25),
                     nj.dense(16, 3))  # fmt: skip


def jitter(key: jax.Array, x: jax.Array) -> jax.Array:
    """A pure in-graph augmentation: Gaussian noise from the step's key."""
    return x + 0.1 * jax.random.normal(key, x.shape, x.dtype)


@pytest.mark.parametrize(
    "mode",
    [{"steps": 6, "log_every": 2}, {"epochs": 2, "batch_size": 16},
     {"epochs": 2, "batch_size": 16, "drop_last": False}],
    ids=["full", "epochs", "partial_batch"],
)  # fmt: skip
def test_resume_from_the_train_state_is_bit_exact(toy, mode):
    """With dropout, batch norm, shuffling and augmentation: N + N == 2N, bit for bit."""
    x, y = toy
    args = (noisy(), nj.cross_entropy, nj.adam(1e-2), x, y)
    common = {"progress": False, "augment": jitter}
    double = {k: 2 * v if k in ("steps", "epochs") else v for k, v in mode.items()}
    straight = nj.fit(*args, key=jax.random.key(5), **common, **double)
    half = nj.fit(*args, key=jax.random.key(5), **common, **mode)
    resumed = nj.fit(*args, train_state=half.train_state, **common, **mode)
    assert resumed.step == straight.step
    assert_trees_equal(resumed.train_state, straight.train_state)
    # The given train state is copied, not donated: it can be resumed from again.
    again = nj.fit(*args, train_state=half.train_state, **common, **mode)
    assert_trees_equal(again.params, resumed.params)


def test_make_epoch_gives_fits_parameters(toy):
    x, y = toy
    model, opt = noisy(), nj.adam(1e-2)
    result = nj.fit(model, nj.cross_entropy, opt, x, y, key=jax.random.key(1), epochs=3,
                    batch_size=16, drop_last=False, augment=jitter, progress=False)  # fmt: skip
    epoch = nj.make_epoch(model, nj.cross_entropy, opt, batch_size=16, drop_last=False,
                          augment=jitter)  # fmt: skip
    ts = nj.TrainState.create(model, opt, jax.random.key(1))
    losses = []
    for _ in range(3):
        ts, metrics = epoch(ts, jnp.asarray(x), jnp.asarray(y))
        assert metrics["loss"].shape == (7,)  # 6 full batches and the partial one
        losses.append(float(np.mean(metrics["loss"])))
    assert_trees_equal(ts, result.train_state)
    np.testing.assert_allclose(losses, result.history["loss"], rtol=1e-6)


def test_make_epoch_compiles_once_for_an_equal_model_and_optimizer(toy):
    x, y = jnp.asarray(toy[0]), jnp.asarray(toy[1])
    chex.clear_trace_counter()
    loss = nj.cross_entropy._replace(
        value=chex.assert_max_traces(lambda o, t: nj.cross_entropy.value(o, t), n=1)
    )
    model = nj.serial(nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    ts = nj.TrainState.create(model, nj.adam(1e-2), jax.random.key(0))
    for _ in range(2):  # a new but equal optimizer: the same compiled epoch
        ts, _ = nj.make_epoch(model, loss, nj.adam(1e-2), batch_size=20)(ts, x, y)
    assert int(ts.step) == 10


def test_augment_runs_in_the_step_with_a_fresh_key_each_step(toy):
    """The augmented batch reaches the model, and each step draws another augmentation."""
    x, y = toy
    model = nj.serial(nj.dense(6, 3))
    mean_in = {"first_input": lambda o, t: o[0, 0]}  # the model is linear: o tracks x
    runs = [
        nj.fit(model, nj.cross_entropy, nj.sgd(1e-30), x[:10], y[:10], key=jax.random.key(0),
               steps=3, log_every=1, metrics=mean_in, augment=augment, progress=False)
        for augment in (None, jitter)
    ]  # fmt: skip
    plain, jittered = (np.asarray(r.history["first_input"]) for r in runs)
    assert len(set(plain.round(6).tolist())) == 1  # the same batch every step
    assert len(set(jittered.round(6).tolist())) == 3  # a new draw every step
    assert np.all(np.abs(jittered - plain) > 1e-4)


def test_metrics_are_computed_in_the_step_and_logged(toy):
    x, y = toy
    model = nj.serial(nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    mean_out = {"mean_output": lambda o, t: jnp.mean(o), "accuracy": nj.accuracy}
    result = nj.fit(model, nj.cross_entropy, nj.sgd(1e-30), x, y, key=jax.random.key(0),
                    steps=2, log_every=1, metrics=mean_out, progress=False)  # fmt: skip
    params = model.init(nj.train.run_keys(jax.random.key(0))[0])
    out = np.asarray(model.apply(params, x))
    assert result.history["mean_output"][0] == pytest.approx(out.mean(), rel=1e-5)
    assert result.history["accuracy"][0] == pytest.approx(np.mean(out.argmax(1) == y))
    with pytest.raises(ValueError, match="fit: metric names"):
        nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0), steps=1,
               metrics={"loss": nj.accuracy}, progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="fit: metrics must be a dict"):
        nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0), steps=1,
               metrics=[nj.accuracy], progress=False)  # fmt: skip


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_trains_with_float_targets_and_reports_the_true_loss(outputs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    w = rng.normal(size=(5, outputs)).astype(np.float32)
    y = (x @ w + 0.05 * rng.normal(size=(256, outputs))).astype(np.float32)
    targets = y[:, 0] if outputs == 1 else y  # (N,) for one output
    model = nj.serial(nj.dense(5, 16), nj.tanh(), nj.dense(16, outputs))
    result = nj.fit(model, nj.mse, nj.adam(1e-2), x, targets, key=jax.random.key(0),
                    epochs=40, batch_size=32, validation_split=0.25, progress=False)  # fmt: skip
    assert set(result.history) == {"epoch", "loss", "eval_epoch", "eval_loss", "eval_mse",
                                   "eval_mae", "eval_r2"}  # no accuracy  # fmt: skip
    report = nj.evaluate(model, result.params, x[192:], targets[192:], nj.mse)
    assert isinstance(report, nj.RegressionReport)
    pred = np.asarray(model.apply(result.params, x[192:]), np.float64)
    true = y[192:].astype(np.float64)
    assert report.mse == pytest.approx(np.mean((pred - true) ** 2), rel=1e-5)
    assert report.loss == pytest.approx(result.history["eval_loss"][-1], rel=1e-6)
    assert report.r2 > 0.9
    assert "Confusion" not in str(report)


def test_validation_split_holds_out_the_last_rows_and_evaluates_in_batches(toy):
    x, y = toy
    model = nj.serial(nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    result = nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                    epochs=2, batch_size=10, validation_split=0.2, eval_batch_size=7,
                    progress=False)  # fmt: skip
    assert result.step == 2 * 8  # 80 training rows
    report = nj.evaluate(model, result.params, x[80:], y[80:])
    assert result.history["eval_loss"][-1] == pytest.approx(report.loss, rel=1e-6)
    assert result.history["eval_accuracy"][-1] == report.accuracy
    np.testing.assert_array_equal(result.history["eval_epoch"], [1, 2])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"validation_split": 1.0}, ValueError, r"fit: validation_split must be a float in"),
        ({"validation_split": 0.2, "eval_data": None, "local_data": True}, ValueError,
         "local_data"),
        ({"augment": 3}, TypeError, r"fit: augment must be a function"),
        ({"train_state": "state"}, TypeError, r"fit: train_state must be a TrainState"),
        ({"key": None}, TypeError, r"fit: key must be a PRNG key"),
        ({"eval_batch_size": 0}, ValueError, r"fit: eval_batch_size"),
        ({"progress": 1}, TypeError, r"fit: progress must be a bool"),
    ],
)  # fmt: skip
def test_bad_arguments_name_fit(toy, kwargs, error, match):
    args = {"key": jax.random.key(0), "epochs": 1, "batch_size": 10, "progress": False}
    with pytest.raises(error, match=match):
        nj.fit(nj.serial(nj.dense(6, 3)), nj.cross_entropy, nj.sgd(0.1), *toy,
               **{**args, **kwargs})  # fmt: skip


def test_train_state_and_its_parts_are_not_given_together(toy):
    x, y = toy
    model = nj.serial(nj.dense(6, 3))
    first = nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0), steps=1,
                   progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="fit: train_state holds params"):
        nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, train_state=first.train_state,
               params=first.params, steps=1, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"fit: key differs from train_state\.key"):
        nj.fit(model, nj.cross_entropy, nj.sgd(0.1), x, y, train_state=first.train_state,
               key=jax.random.key(1), steps=1, progress=False)  # fmt: skip


def test_fit_many_errors_name_fit_many(toy):
    x, y = toy
    model = nj.serial(nj.dense(6, 3))
    with pytest.raises(ValueError, match=r"^fit_many: labels y must lie in \[0, 3\)"):
        nj.fit_many(model, nj.cross_entropy, nj.sgd(0.1), x, y + 5, key=jax.random.key(0),
                    num_models=2, steps=1, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"^fit_many: steps must be an int"):
        nj.fit_many(model, nj.cross_entropy, nj.sgd(0.1), x, y, key=jax.random.key(0),
                    num_models=2, steps=-1, progress=False)  # fmt: skip


class CtrlC(nj.callbacks.Callback):
    """Press Ctrl-C (a real SIGINT to this process) at given log points."""

    def __init__(self, at: int, times: int = 1) -> None:
        self.at, self.times = at, times

    def on_log(self, run, logs):
        if run.done == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("mode", [{"steps": 30, "log_every": 5}, {"epochs": 6, "batch_size": 20}])
def test_ctrl_c_stops_at_the_log_point_with_the_partial_state(toy, mode):
    x, y = toy
    args = (noisy(), nj.cross_entropy, nj.adam(1e-2), x, y)
    at = 2 if "epochs" in mode else 10
    stopped = nj.fit(*args, key=jax.random.key(0), callbacks=[CtrlC(at)], progress=False, **mode)
    assert stopped.stopped == "interrupted"
    per_unit = 1 if "steps" in mode else 5
    assert stopped.step == at * per_unit
    assert len(stopped.history["loss"]) == at  # one row per epoch, or per full-batch step
    # The partial state continues to the straight run's end, bit for bit.
    rest = {**mode, **({"epochs": 6 - at} if "epochs" in mode else {"steps": 30 - at})}
    finished = nj.fit(*args, train_state=stopped.train_state, progress=False, **rest)
    straight = nj.fit(*args, key=jax.random.key(0), progress=False, **mode)
    assert_trees_equal(finished.train_state, straight.train_state)
    # The handler is gone afterwards: Python's own is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_aborts_at_once(toy):
    x, y = toy
    with pytest.raises(KeyboardInterrupt):
        nj.fit(noisy(), nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
               epochs=4, batch_size=20, callbacks=[CtrlC(1, times=2)], progress=False)  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_train_state_create_rejects_what_is_not_a_model_optimizer_or_key():
    model, opt, key = nj.serial(nj.dense(6, 3)), nj.adam(1e-2), jax.random.key(0)
    with pytest.raises(TypeError, match=r"TrainState\.create: model must be a Layer \(nj\.Layer"):
        nj.TrainState.create(lambda x: x, opt, key)
    with pytest.raises(TypeError, match=r"TrainState\.create: optimizer must have init"):
        nj.TrainState.create(model, 0.1, key)
    with pytest.raises(TypeError, match=r"TrainState\.create: key must be a PRNG key"):
        nj.TrainState.create(model, opt, 0)
