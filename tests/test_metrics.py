"""evaluate / Report against a hand-computed small case."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj


def _fixed_model(logits: np.ndarray) -> nj.Layer:
    """A 'model' that ignores the input's values and returns row i of ``logits`` for x[i, 0] = i."""
    table = jnp.asarray(logits, jnp.float64)

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
    assert a.loss == pytest.approx(b.loss, rel=1e-12)


def test_bad_input():
    model = _fixed_model(np.zeros((3, 2)))
    x = np.arange(3, dtype=np.float64)[:, None]
    with pytest.raises(ValueError, match=r"\(3,\)"):
        nj.evaluate(model, (), x, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        nj.evaluate(model, (), x, np.array([0, 1, 2], np.int32))
    with pytest.raises(ValueError, match="floating"):
        nj.evaluate(model, (), np.zeros((3, 1), np.int32), np.zeros(3, np.int32))
