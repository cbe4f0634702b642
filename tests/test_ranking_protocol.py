"""The ranking protocol on synthetic data: the chosen rate, the budget, matched seeds, a test
set that plays no part in the choice, the variants of the claims."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax import ranking
from nnrs_jax.ranking import Protocol


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)  # 3 of the 10 classes
    x = rng.random((n, 784), np.float32) * 0.2
    for c in range(3):  # learnable: the class's own block of 200 pixels is brighter
        x[y == c, 200 * c : 200 * (c + 1)] += 0.5
    return x, y


SMALL = Protocol(steps=20, batch_size=50, seeds=3, validation_size=200, train_size=500)


@pytest.fixture(scope="module")
def synthetic():
    adam = ranking.optimizer_variants()[3]
    gd = ranking.optimizer_variants()[-1]
    variants = [
        adam._replace(grid=(1e-3, 1e-2)),
        adam._replace(name="Adam again", grid=(1e-3, 1e-2)),
        gd._replace(grid=(0.3, 1e9)),  # the second rate diverges
    ]
    x, y = _data(800, 0)
    xt, yt = _data(300, 1)
    seen = []
    result = ranking.rank(variants, x, y, xt, yt, SMALL, progress=seen.append)
    return variants, (x, y, xt, yt), result, seen


def test_rank_results(synthetic):
    _, _, result, seen = synthetic
    assert [r.name for r in result.results] == ["Adam", "Adam again", "GD"]
    assert seen == list(result.results)
    assert result.train_size == 500
    for r in result.results:
        assert r.test.shape == (3,) and r.validation.shape == (2,)
        assert r.learning_rate == r.grid[int(np.nanargmax(r.validation))]
        assert r.diverged == 0 and r.seconds > 0
    adam, _, gd = result.results
    # The budget: 20 updates each, mini-batch as 2 epochs of 10 batches, GD as 20 full steps.
    assert adam.curve_loss.shape == (2, 3) and list(adam.curve_steps) == [5.0, 15.0]
    assert gd.curve_loss.shape == (20, 3) and list(gd.curve_steps) == list(range(20))
    assert np.isnan(gd.validation[1]) and gd.learning_rate == 0.3
    # Learning happened: chance is 1/3.
    assert adam.mean > 80 and gd.mean > 80, (adam.mean, gd.mean)


def test_seeds_are_matched_across_variants(synthetic):
    _, _, result, _ = synthetic
    adam, again, _ = result.results
    np.testing.assert_array_equal(adam.test, again.test)
    np.testing.assert_array_equal(adam.curve_loss, again.curve_loss)
    np.testing.assert_array_equal(adam.validation, again.validation)
    assert len(set(adam.test)) > 1 or len(set(adam.curve_loss[-1])) > 1  # the seeds do differ


def test_the_test_set_plays_no_part_in_the_choice(synthetic):
    variants, (x, y, xt, yt), result, _ = synthetic
    scrambled = np.random.default_rng(5).permutation(yt)
    again = ranking.rank(variants[:1], x, y, xt, scrambled, SMALL).results[0]
    first = result.results[0]
    assert again.learning_rate == first.learning_rate
    np.testing.assert_array_equal(again.validation, first.validation)
    np.testing.assert_array_equal(again.curve_loss, first.curve_loss)
    assert not np.array_equal(again.test, first.test)


def test_rank_rejects_bad_settings():
    x, y = _data(300, 0)
    adam = ranking.optimizer_variants()[3]
    message = "whole number of epochs: one epoch of batch 50 over 100 training images is 2 steps"
    with pytest.raises(ValueError, match=f"rank: steps must be a {message}, got steps=3"):
        ranking.rank([adam], x, y, x, y, SMALL._replace(steps=3, train_size=None))
    with pytest.raises(ValueError, match="rank: seeds must be an int >= 2, got 1"):
        ranking.rank([adam], x, y, x, y, SMALL._replace(seeds=1))
    with pytest.raises(ValueError, match="rank: train_size 200 exceeds the 100 training images"):
        ranking.rank([adam], x, y, x, y, Protocol(validation_size=200, train_size=200))
    with pytest.raises(ValueError, match="unique names"):
        ranking.rank([adam, adam], x, y, x, y, SMALL)
    with pytest.raises(ValueError, match=r"Adam: grid must hold floats > 0, got \(\)"):
        ranking.rank([adam._replace(grid=())], x, y, x, y, SMALL)
    with pytest.raises(TypeError, match="rank: protocol must be a Protocol, got dict"):
        ranking.rank([adam], x, y, x, y, {"steps": 10})


def test_every_rate_diverging_is_an_error():
    x, y = _data(300, 0)
    gd = ranking.optimizer_variants()[-1]._replace(grid=(1e9,))
    small = Protocol(steps=3, seeds=2, validation_size=100, train_size=None)
    with pytest.raises(FloatingPointError, match=r"GD: every learning rate of the grid"):
        ranking.rank([gd], x, y, x, y, small)


def test_variants_follow_the_claims():
    names = [v.name for v in ranking.optimizer_variants()]
    claimed = re.split(r" [>~] ", ranking.OPTIMIZER_CLAIM)
    assert names == claimed
    assert [v.full_batch for v in ranking.optimizer_variants()] == [False] * 7 + [True]
    activations = ranking.activation_variants()
    assert [v.name for v in activations] == re.split(r" > ", ranking.ACTIVATION_CLAIM)
    # One shape for all, so seed i draws the same normals; SELU's scale is LeCun's, the rest He's.
    import jax

    key = jax.random.key(0)
    w = {v.name: np.asarray(v.model.init(key)[0].w) for v in activations}
    np.testing.assert_allclose(w["SELU"] * np.sqrt(2), w["ReLU"], rtol=1e-6)
    np.testing.assert_array_equal(w["ELU"], w["tanh"])


def test_a_model_with_batch_norm_is_scored_in_inference_mode():
    x, y = _data(800, 0)
    xt, yt = _data(300, 1)
    model = nj.serial(nj.dense(784, 16), nj.batch_norm(16), nj.elu(), nj.dense(16, 10))
    variant = ranking.Variant("batch norm", model, nj.adam, (1e-2,))
    result = ranking.rank([variant], x, y, xt, yt, SMALL).results[0]
    assert result.test.shape == (3,) and result.diverged == 0
    # Scored with the running statistics after learning: chance is 1/3.
    assert result.mean > 80, result.mean
