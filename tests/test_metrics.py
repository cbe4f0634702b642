"""evaluate: Report against a hand-computed case, RegressionReport and user metrics against
NumPy, padded batches, and clear errors for bad data or arguments."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax.metrics import RegressionReport

TOL = 1e-12 if jax.config.jax_enable_x64 else 1e-5
ROWS = np.arange(3, dtype=np.float64)[:, None]  # x for three rows of `_fixed_model`


def _fixed_model(logits: np.ndarray) -> nj.Layer:
    """A 'model' that ignores the input's values and returns row i of ``logits`` for x[i, 0] = i."""
    table = jnp.asarray(logits)  # float64 in the x64 run, float32 with --float32

    def apply(params, x):
        return table[x[:, 0].astype(jnp.int32)]

    return nj.Layer(lambda key: (), apply, lambda p, x, dy: ((), jnp.zeros_like(x)))


def test_hand_computed_report():
    # true:      0  0  1  1  1  2
    # predicted: 0  1  1  1  0  1   -> class 2 never predicted
    y = np.array([0, 0, 1, 1, 1, 2], np.int32)
    pred = np.array([0, 1, 1, 1, 0, 1])
    logits = np.full((6, 3), -5.0)
    logits[np.arange(6), pred] = 5.0
    x = np.arange(6, dtype=np.float64)[:, None]
    report = nj.evaluate(_fixed_model(logits), (), x, y, batch_size=4)
    np.testing.assert_array_equal(report.confusion_matrix, [[1, 1, 0], [1, 2, 0], [0, 1, 0]])
    assert report.accuracy == pytest.approx(3 / 6)
    np.testing.assert_allclose(report.precision, [1 / 2, 2 / 4, 0.0])
    np.testing.assert_allclose(report.recall, [1 / 2, 2 / 3, 0.0])
    f1_1 = 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)
    np.testing.assert_allclose(report.f1, [0.5, f1_1, 0.0])
    assert report.macro_f1 == pytest.approx((0.5 + f1_1) / 3)
    log_p_right = 5.0 - 5.0 - np.log(np.exp(0) + 2 * np.exp(-10))
    log_p_wrong = -5.0 - 5.0 - np.log(np.exp(0) + 2 * np.exp(-10))
    assert report.loss == pytest.approx(-(3 * log_p_right + 3 * log_p_wrong) / 6)
    text = str(report)
    assert "Confusion Matrix:" in text and "Class 2: TP = 0, FP = 0, FN = 1, TN = 5" in text
    assert text.endswith("Accuracy: 50.00%")


def test_zero_division_rule():
    report = nj.Report.from_confusion(np.array([[2, 0], [1, 0]]), loss=0.0, zero_division=1.0)
    assert report.precision[1] == 1.0 and report.recall[1] == 0.0


def test_batching_does_not_change_the_result():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(23, 4))
    y = rng.integers(0, 4, 23).astype(np.int32)
    x = np.arange(23, dtype=np.float64)[:, None]
    a = nj.evaluate(_fixed_model(logits), (), x, y, batch_size=5)
    b = nj.evaluate(_fixed_model(logits), (), x, y, batch_size=100)
    np.testing.assert_array_equal(a.confusion_matrix, b.confusion_matrix)
    assert a.loss == pytest.approx(b.loss, rel=TOL)


def _numpy_regression(pred: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² (uniform average over outputs, as scikit-learn's r2_score) in NumPy."""
    pred, t = pred.reshape(len(t), -1), t.reshape(len(t), -1)
    ss_res = ((pred - t) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    mse = float(np.mean((pred - t) ** 2))
    return {"loss": mse, "mse": mse, "mae": float(np.mean(np.abs(pred - t))),
            "r2": float(np.mean(1 - ss_res / ss_tot))}  # fmt: skip


@pytest.mark.parametrize("outputs", [None, 3])
@pytest.mark.parametrize("batch_size", [5, 7, 100])
def test_regression_report_matches_numpy(outputs, batch_size):
    """y (N,) for one output and (N, 3); 23 rows in batches of 5 or 7 leave a padded last one."""
    rng = np.random.default_rng(0)
    shape = (23,) if outputs is None else (23, outputs)
    t = rng.normal(size=shape)
    pred = t + rng.normal(scale=0.5, size=shape)
    x = np.arange(23, dtype=np.float64)[:, None]
    report = nj.evaluate(_fixed_model(pred.reshape(23, -1)), (), x, t, nj.mse,
                         batch_size=batch_size)  # fmt: skip
    assert isinstance(report, RegressionReport) and report.n == 23
    expected = _numpy_regression(pred, t)
    assert report.scalars() == pytest.approx(expected, rel=TOL)
    assert report.metrics == {}


def test_regression_r2_of_a_constant_output_follows_scikit_learn():
    """SS_tot = 0: an exact prediction scores 1, any other 0 (force_finite=True)."""
    t = np.stack([np.ones(4), np.arange(4.0), np.full(4, 2.0)], axis=1)
    pred = t.copy()
    pred[:, 2] += 0.5
    x = np.arange(4, dtype=np.float64)[:, None]
    report = nj.evaluate(_fixed_model(pred), (), x, t, nj.mse)
    assert report.r2 == pytest.approx((1.0 + 1.0 + 0.0) / 3)


def test_regression_report_text_and_scalars():
    t = np.arange(4.0)[:, None]
    x = np.arange(4, dtype=np.float64)[:, None]
    report = nj.evaluate(_fixed_model(t + 1), (), x, t, nj.mse,
                         metrics={"bias": lambda o, t: jnp.mean(o - t)})  # fmt: skip
    text = str(report)
    assert "Confusion" not in text
    assert text.splitlines() == [
        "Regression on 4 examples",
        "Loss: 1.000000",
        "MSE: 1.000000",
        "MAE: 1.000000",
        "R2: 0.200000",
        "bias: 1.000000",
    ]
    assert list(report.scalars()) == ["loss", "mse", "mae", "r2", "bias"]


def test_float_targets_with_a_classification_loss_stay_classification():
    """One-hot float targets with cross_entropy give the same Report as the integer labels."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(9, 3))
    y = rng.integers(0, 3, 9).astype(np.int32)
    x = np.arange(9, dtype=np.float64)[:, None]
    model = _fixed_model(logits)
    a = nj.evaluate(model, (), x, y, batch_size=4)
    b = nj.evaluate(model, (), x, np.eye(3)[y], batch_size=4)
    assert isinstance(b, nj.Report)
    np.testing.assert_array_equal(a.confusion_matrix, b.confusion_matrix)
    assert a.scalars() == b.scalars() == {"loss": a.loss, "accuracy": a.accuracy}
    # Integer labels with a regression loss are classification too.
    assert isinstance(nj.evaluate(model, (), x, y, nj.mse), nj.Report)


@pytest.mark.parametrize("batch_size", [4, 100])
def test_metrics_match_numpy(batch_size):
    """User metrics are per-example means over all examples; the padded rows are excluded."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(10, 3))
    y = rng.integers(0, 3, 10).astype(np.int32)
    x = np.arange(10, dtype=np.float64)[:, None]

    def top2(o, t):
        ranks = jnp.sum(o > jnp.take_along_axis(o, t[:, None], axis=1), axis=1)
        return jnp.mean(ranks < 2)

    def max_logit(o, t):
        return jnp.mean(jnp.max(o, axis=1))

    metrics = {"top2": top2, "max_logit": max_logit}
    report = nj.evaluate(_fixed_model(logits), (), x, y, batch_size=batch_size, metrics=metrics)
    ranks = (logits > logits[np.arange(10), y][:, None]).sum(axis=1)
    expected = {"top2": np.mean(ranks < 2), "max_logit": np.mean(logits.max(axis=1))}
    assert report.metrics == pytest.approx(expected, rel=TOL)
    assert report.scalars() == pytest.approx(
        {"loss": report.loss, "accuracy": report.accuracy, **expected}, rel=TOL
    )
    text = str(report)
    assert text.endswith(f"top2: {expected['top2']:.6f}\nmax_logit: {expected['max_logit']:.6f}")

    t = rng.normal(size=(10, 2))
    pred = t + rng.normal(size=(10, 2))
    within = {"within_1": lambda o, t: jnp.mean(jnp.all(jnp.abs(o - t) < 1, axis=1))}
    report = nj.evaluate(_fixed_model(pred), (), x, t, nj.mse, batch_size=batch_size,
                         metrics=within)  # fmt: skip
    assert report.metrics["within_1"] == pytest.approx(np.mean(np.all(np.abs(pred - t) < 1, 1)))


def test_evaluate_on_a_mesh_gives_the_same_regression_report():
    rng = np.random.default_rng(3)
    t, pred = rng.normal(size=(11, 2)), rng.normal(size=(11, 2))
    x = np.arange(11, dtype=np.float64)[:, None]
    metrics = {"bias": lambda o, t: jnp.mean(o - t)}
    a, b = (nj.evaluate(_fixed_model(pred), (), x, t, nj.mse, batch_size=4, metrics=metrics,
                        mesh=mesh) for mesh in (None, nj.parallel.data_mesh()))  # fmt: skip
    assert b.scalars() == pytest.approx(a.scalars(), rel=TOL)


def test_regression_compiles_once():
    """Repeated calls, and another N with the same batch size, reuse the compiled code."""
    model = nj.serial(nj.dense(3, 2))
    params = model.init(jax.random.key(0))
    chex.clear_trace_counter()
    loss = nj.mse._replace(value=chex.assert_max_traces(lambda o, t: nj.mse.value(o, t), n=1))
    rng = np.random.default_rng(4)
    for n in (10, 10, 7):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        nj.evaluate(model, params, x, rng.normal(size=(n, 2)).astype(np.float32), loss,
                    batch_size=4)  # fmt: skip


@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_rejected(where, bad):
    x = np.arange(5, dtype=np.float64)[:, None]
    t = np.zeros((5, 1))
    (x if where == "x" else t)[3, 0] = bad
    with pytest.raises(
        ValueError, match=rf"^evaluate: {where} contains NaN or inf \(first at row 3\)"
    ):
        nj.evaluate(_fixed_model(np.zeros((5, 1))), (), x, t, nj.mse)


@pytest.mark.parametrize(
    ("x", "y", "loss", "error", "match"),
    [
        (ROWS, np.zeros(4, np.int32), nj.cross_entropy, ValueError,
         r"x and y must have the same length, got 3 and 4"),
        (ROWS, np.array([0, 1, 2], np.int32), nj.cross_entropy, ValueError,
         r"labels y must lie in \[0, 2\)"),
        (np.zeros((3, 1), bool), np.zeros(3, np.int32), nj.cross_entropy, TypeError,
         r"x must have a floating dtype \(or integer token ids .*\), got bool"),
        (ROWS, np.zeros(3, np.float64), nj.cross_entropy, TypeError,
         r"labels y must have an integer dtype, got float64"),
        (ROWS, np.zeros(3), nj.mse, ValueError,
         r"targets y of shape \(3,\) need a model with one output, this one has 2"),
        (ROWS, np.zeros((3, 3)), nj.mse, ValueError,
         r"targets y must have shape \(N, 2\), got \(3, 3\)"),
    ],
    ids=["lengths", "label_range", "bool_x", "float64_labels", "flat_targets", "target_shape"],
)  # fmt: skip
def test_bad_data(x, y, loss, error, match):
    with pytest.raises(error, match=f"^evaluate: {match}"):
        nj.evaluate(_fixed_model(np.zeros((3, 2))), (), x, y, loss)


def test_a_dense_model_given_images_gets_a_hint():
    model = nj.serial(nj.dense(16, 2))
    params = model.init(jax.random.key(0))
    x, y = np.zeros((3, 4, 4), np.float32), np.zeros(3, np.int32)
    with pytest.raises(
        ValueError,
        match=r"^evaluate: x of shape \(3, 4, 4\) does not fit the model \(dense\(16, 2\): .*\); "
        r"a dense model takes flat rows: reshape to \(N, 16\) or load with flatten=True; "
        r"a conv model takes NHWC \(N, 4, 4, 1\)$",
    ):
        nj.evaluate(model, params, x, y)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, r"evaluate: batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, r"evaluate: batch_size must be an int, got 2\.0"),
        ({"zero_division": "0"}, TypeError, r"evaluate: zero_division must be a float"),
        ({"metrics": [len]}, TypeError, r"evaluate: metrics must be a dict .*, got list"),
        ({"metrics": {1: len}}, TypeError, r"evaluate: metrics names must be non-empty strings"),
        ({"metrics": {"f": 1.0}}, TypeError, r"evaluate: metrics\['f'\] must be a function"),
        ({"metrics": {"accuracy": len}}, ValueError, r"evaluate: metrics name 'accuracy' is taken"),
        ({"metrics": {"rows": lambda o, t: o}}, ValueError,
         r"evaluate: metric 'rows' must return a scalar .*, got shape \(1, 2\)"),
        ({"loss": len}, TypeError, r"evaluate: loss must be a Loss .*, got builtin_function"),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs, error, match):
    kwargs = {"loss": nj.cross_entropy, **kwargs}
    with pytest.raises(error, match=f"^{match}"):
        nj.evaluate(_fixed_model(np.zeros((3, 2))), (), ROWS, np.zeros(3, np.int32), **kwargs)
