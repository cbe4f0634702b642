"""check_data and task: the one validator for the data given to evaluate and fit."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax.data_checks import Data, check_data, task

MODEL = nj.serial(nj.dense(6, 3))
PARAMS = MODEL.init(jax.random.key(0))
X = np.zeros((4, 6), np.float32)
LABELS = np.array([0, 1, 2, 1])


def check(x=X, y=LABELS, loss=nj.cross_entropy, model=MODEL, params=PARAMS) -> Data:
    return check_data("fit", model, params, model.init_state(), x, y, loss)


@pytest.mark.parametrize(
    ("loss", "y", "expected"),
    [
        (nj.cross_entropy, np.zeros(3, np.int64), "classification"),
        (nj.cross_entropy, np.zeros((3, 2), np.float32), "classification"),
        (nj.softmax_mse, np.zeros((3, 2), np.float32), "classification"),
        (nj.mse, np.zeros(3, np.int32), "classification"),
        (nj.mse, np.zeros((3, 2), np.uint8), "classification"),
        (nj.mse, np.zeros((3, 2), np.float32), "regression"),
        (nj.mse, np.zeros(3, np.float64), "regression"),
        (nj.mse, [[0.5, 1.0]], "regression"),
        (nj.Loss(nj.mse.value, nj.mse.backward, "custom"), np.zeros(3), "regression"),
    ],
)
def test_task(loss, y, expected):
    assert task(loss, y) == expected


def test_classification_labels_and_targets():
    data = check(y=LABELS.astype(np.int64))
    assert data.task == "classification" and data.outputs == 3
    assert data.y.dtype == np.int32 and data.x is X
    np.testing.assert_array_equal(data.y, LABELS)
    one_hot = check(y=np.eye(3)[LABELS])
    assert one_hot.task == "classification"
    assert one_hot.y.shape == (4, 3) and one_hot.y.dtype == PARAMS[0].w.dtype


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_regression_targets_for_one_output(shape):
    model = nj.serial(nj.dense(6, 1))
    t = np.arange(4.0).reshape(shape)
    data = check(y=t, loss=nj.mse, model=model, params=model.init(jax.random.key(0)))
    assert data.task == "regression" and data.outputs == 1
    assert data.y.shape == (4, 1) and data.y.dtype == PARAMS[0].w.dtype
    np.testing.assert_array_equal(data.y[:, 0], np.arange(4.0))


def test_device_arrays_are_accepted():
    data = check(x=jax.numpy.asarray(X), y=jax.numpy.asarray(LABELS))
    assert isinstance(data.x, np.ndarray) and isinstance(data.y, np.ndarray)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "mse"}, TypeError, r"fit: loss must be a Loss such as nj\.cross_entropy .*str"),
        ({"x": np.zeros(4, np.float32)}, ValueError, r"fit: x must be an \(N, \.\.\.\) array"),
        ({"x": np.zeros((4, 6), np.int32)}, TypeError, r"fit: x must have a floating dtype"),
        ({"y": np.zeros((4, 3, 1))}, ValueError, r"fit: y must be labels \(N,\) or targets"),
        ({"y": LABELS[:3]}, ValueError, r"fit: x and y must have the same length, got 4 and 3"),
        ({"x": X[:0], "y": LABELS[:0]}, ValueError, r"fit: x and y are empty"),
        ({"y": LABELS.astype(np.float64)}, TypeError,
         r"fit: labels y must have an integer dtype, got float64 \(cross_entropy is a "
         r"classification loss"),
        ({"y": LABELS + 1}, ValueError,
         r"fit: labels y must lie in \[0, 3\) for a model with 3 outputs, got values in \[1, 3\]"),
        ({"y": np.zeros((4, 2))}, ValueError, r"fit: targets y must have shape \(N, 3\), got"),
        ({"y": np.zeros((4, 3), bool)}, TypeError,
         r"fit: targets y must have a floating or integer dtype, got bool"),
        ({"y": np.zeros((4, 2)), "loss": nj.mse}, ValueError,
         r"fit: targets y must have shape \(N, 3\), got \(4, 2\)"),
        ({"y": np.zeros(4), "loss": nj.mse}, ValueError,
         r"fit: targets y of shape \(4,\) need a model with one output, this one has 3"),
        ({"y": np.zeros((4, 3), bool), "loss": nj.mse}, TypeError,
         r"fit: targets y must have a floating dtype, got bool"),
    ],
)  # fmt: skip
def test_each_rule_has_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=f"^{match}"):
        check(**kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_the_first_bad_row(bad):
    x = np.ones((6, 2, 3), np.float32)
    x[4, 1, 2] = x[5, 0, 0] = bad
    model = nj.serial(nj.flatten(), nj.dense(6, 3))
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"^fit: x contains NaN or inf \(first at row 4\)$"):
        check(x=x, y=np.zeros(6, np.int32), model=model, params=params)
    t = np.zeros((4, 3))
    t[2, 1] = bad
    with pytest.raises(ValueError, match=r"^fit: y contains NaN or inf \(first at row 2\)$"):
        check(y=t, loss=nj.mse)
    with pytest.raises(ValueError, match=r"^fit: y contains NaN or inf \(first at row 2\)$"):
        check(y=t)


@pytest.mark.parametrize(
    ("model", "x", "hint"),
    [
        (
            nj.serial(nj.dense(16, 3)),
            np.zeros((5, 4, 4), np.float32),
            r"a dense model takes flat rows: reshape to \(N, 16\) or load with flatten=True; "
            r"a conv model takes NHWC \(N, 4, 4, 1\)$",
        ),
        (
            nj.serial(nj.dense(16, 3)),
            np.zeros((5, 4, 4, 1), np.float32),
            r"reshape to \(N, 16\) or load with flatten=True; a conv model takes NHWC "
            r"\(N, height, width, channels\)$",
        ),
        (
            nj.serial(nj.conv2d(1, 2, 3), nj.flatten(), nj.dense(8, 3)),
            np.zeros((5, 16), np.float32),
            r"a conv model takes NHWC images \(N, 4, 4, 1\): reshape, or load with flatten=False$",
        ),
    ],
)
def test_x_that_does_not_fit_the_model_gets_a_layout_hint(model, x, hint):
    shape = str(x.shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(
        ValueError, match=rf"^fit: x of shape {shape} does not fit the model \(.*{hint}"
    ):
        check(x=x, y=np.zeros(5, np.int32), model=model, params=model.init(jax.random.key(0)))


def test_a_model_whose_outputs_are_not_rows():
    model = nj.serial(nj.conv2d(1, 3, 3))
    x = np.zeros((2, 5, 5, 1), np.float32)
    with pytest.raises(ValueError, match=r"^fit: the model must give outputs of shape \(batch, "):
        check(x=x, y=np.zeros(2, np.int32), model=model, params=model.init(jax.random.key(0)))


@pytest.mark.float64
def test_float64_x_into_float32_params_is_a_dtype_error():
    """Strict promotion (as in these tests) refuses float64 x times float32 weights."""
    with pytest.raises(
        TypeError,
        match=r"^fit: x of dtype float64 does not fit the model \(.*\); cast x to "
        r"the parameters' dtype float32$",
    ):
        check(x=X.astype(np.float64))
