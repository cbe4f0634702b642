"""The ranking protocol, Welch's t-test, claim verdicts and the ``nnrs-jax rank`` command."""

from __future__ import annotations

import math
import re

import jax.scipy.special
import numpy as np
import pytest

from nnrs_jax import cli, ranking
from nnrs_jax.ranking import Protocol, Ranking, VariantResult

# --- Welch's t-test ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, x",
    [(2.0, 0.5, 0.3), (0.5, 0.5, 0.9), (10.0, 0.5, 0.99), (1.7, 0.5, 0.01), (200.0, 0.5, 0.999),
     (3.5, 0.5, 0.5), (0.5, 0.5, 1e-6)],
)  # fmt: skip
def test_incomplete_beta_matches_jax(a, b, x):
    expected = float(jax.scipy.special.betainc(np.float64(a), np.float64(b), np.float64(x)))
    assert ranking._betainc(a, b, x) == pytest.approx(expected, rel=1e-12, abs=1e-300)


# Two-sided 5 % critical values of Student's t (any statistics table): p must be 0.05 there.
@pytest.mark.parametrize("df, t", [(1, 12.7062), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_p_value_at_tabulated_critical_values(df, t):
    assert ranking._betainc(df / 2, 0.5, df / (df + t * t)) == pytest.approx(0.05, abs=2e-5)


def test_welch_statistic_and_degrees_of_freedom():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    result = ranking.welch_t_test(a, b)
    assert result.t == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb), rel=1e-14)
    assert result.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 2), rel=1e-14)
    x = result.df / (result.df + result.t**2)
    expected = float(jax.scipy.special.betainc(result.df / 2, 0.5, x))
    assert result.p == pytest.approx(expected, rel=1e-12)
    swapped = ranking.welch_t_test(b, a)
    assert (swapped.t, swapped.df, swapped.p) == pytest.approx((-result.t, result.df, result.p))


def test_welch_is_calibrated_under_the_null():
    # Equal means, unequal variances, 5 values each: Welch keeps the false-positive rate near
    # alpha where Student's pooled test would not; 4000 trials give a standard error of 0.35 %.
    rng = np.random.default_rng(0)
    p = [ranking.welch_t_test(rng.normal(0, 1, 5), rng.normal(0, 3, 5)).p for _ in range(4000)]
    assert 0.035 < np.mean(np.array(p) < 0.05) < 0.065
    # and detects a large shift almost always
    p = [ranking.welch_t_test(rng.normal(3, 1, 5), rng.normal(0, 1, 5)).p for _ in range(500)]
    assert np.mean(np.array(p) < 0.05) > 0.95


def test_welch_zero_variance():
    assert ranking.welch_t_test([1.0, 1.0], [1.0, 1.0]).p == 1.0
    result = ranking.welch_t_test([2.0, 2.0], [1.0, 1.0])
    assert result.p == 0.0 and result.t == math.inf


@pytest.mark.parametrize("a", [[0.9], [[0.9, 0.8]], [0.9, float("nan")]])
def test_welch_rejects_bad_samples(a):
    with pytest.raises(ValueError, match=r"welch_t_test: a must be a 1-D sample of at least 2"):
        ranking.welch_t_test(a, [0.1, 0.2])


# --- claims and verdicts --------------------------------------------------------------------


def test_parse_the_seed_claims():
    pairs = ranking.parse_claim(ranking.OPTIMIZER_CLAIM)
    assert pairs[0] == ("RMSProp", "~", "Nadam") and pairs[-1] == ("SGD", ">", "GD")
    assert len(pairs) == 7 and all(rel == ">" for _, rel, _ in pairs[1:])
    assert [a for a, _, _ in ranking.parse_claim(ranking.ACTIVATION_CLAIM)] == [
        "SELU", "ELU", "leaky ReLU", "ReLU", "tanh",
    ]  # fmt: skip


@pytest.mark.parametrize("claim", ["", "A", "A > ", "> B", "A > > B"])
def test_parse_claim_rejects_malformed(claim):
    with pytest.raises(ValueError, match="parse_claim: a claim is names joined by"):
        ranking.parse_claim(claim)


def _result(name: str, test: list[float], lr: float = 0.01) -> VariantResult:
    return VariantResult(
        name, lr, (0.001, 0.01, 0.1), np.array([0.8, 0.9, 0.85]), np.asarray(test),
        np.array([0.5, 1.5]), np.ones((2, len(test))), 0, 1.0,
    )  # fmt: skip


def _ranking(**tests: list[float]) -> Ranking:
    return Ranking(tuple(_result(n, t) for n, t in tests.items()), Protocol(seeds=5), 1000)


def test_verdicts():
    r = _ranking(
        A=[0.95, 0.951, 0.949, 0.952, 0.948],
        B=[0.90, 0.901, 0.899, 0.902, 0.898],
        C=[0.90, 0.91, 0.89, 0.92, 0.88],
        D=[0.94, 0.941, 0.939, 0.942, 0.938],
    )
    verdicts = ranking.check_claim(r, "A > B > C ~ B > D ~ A")
    assert [v.verdict for v in verdicts] == [
        "holds", "not distinguishable", "holds", "reversed", "differs",
    ]  # fmt: skip
    assert verdicts[0].difference == pytest.approx(5.0)
    assert verdicts[3].difference == pytest.approx(-4.0)
    line = ranking.summary("test", verdicts, r)
    assert line.startswith("test: 2 of 5 claimed orderings hold (")
    assert "1 not distinguishable" in line and "1 reversed" in line and "1 differs" in line
    assert "alpha = 0.05, 5 seeds per variant" in line
    with pytest.raises(ValueError, match="no variant named 'E'; the variants are A, B, C, D"):
        ranking.check_claim(r, "A > E")


def test_ranks_and_tables():
    r = _ranking(A=[0.9, 0.92], B=[0.95, 0.97], C=[0.9, 0.92])
    assert r.ranks() == {"A": 2, "B": 1, "C": 2}
    table = ranking.format_ranking(r).splitlines()
    assert table[0].split("|")[1:-1] == [" variant ", " lr       ", " test % mean ± sd ", " rank "]
    assert re.fullmatch(r"\| B +\| 0\.01 +\| 96\.00 ± 1\.41 +\| +1 \|", table[3])
    verdicts = ranking.format_verdicts(ranking.check_claim(r, "B > A"))
    assert "| B > A |" in verdicts and verdicts.rstrip().endswith("|")
    edge = Ranking((_result("E", [0.9, 0.91], lr=0.1),), Protocol(), 1000)
    assert "| 0.1*" in ranking.format_ranking(edge)
    assert "* the best rate of the grid lies on its edge" in ranking.format_ranking(edge)


# --- the protocol on synthetic data -----------------------------------------------------------


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


# --- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_rank_command_quick(mnist_train, mnist_test, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNRS_JAX_CACHE", str(tmp_path / "jit"))
    plot = tmp_path / "rank.png"
    assert cli.main(["rank", "activations", "--quick", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    row = r"^\| (\S+(?: ReLU)?) +\| ([\d.e-]+)\*? +\| +([\d.]+) ± ([\d.]+) +\| +(\d) \|$"
    rows = re.findall(row, out, re.M)
    assert [r[0] for r in rows] == ["SELU", "ELU", "leaky ReLU", "ReLU", "tanh", "logistic"]
    means = {name: float(mean) for name, _, mean, _, _ in rows}
    # 40 Adam steps of 100 on 2000 images: every activation learns (chance is 10 %).
    assert min(means.values()) > 60, means
    ranks = {name: int(rank) for name, _, _, _, rank in rows}
    assert ranks == {n: 1 + sum(m > means[n] for m in means.values()) for n in means}
    verdicts = re.findall(r"^\| (.+?) +\| +[-+][\d.]+ \| +[\d.]+ \| (.+?) +\|$", out, re.M)
    assert [v[0] for v in verdicts] == [
        "SELU > ELU", "ELU > leaky ReLU", "leaky ReLU > ReLU", "ReLU > tanh", "tanh > logistic",
    ]  # fmt: skip
    assert {v[1] for v in verdicts} <= {"holds", "reversed", "not distinguishable"}
    held = sum(v[1] == "holds" for v in verdicts)
    assert f"activations: {held} of 5 claimed orderings hold" in out
    assert "alpha = 0.05, 3 seeds per variant" in out
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_rank_command_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rank", "activations", "--seeds", "1"])
    assert exit_info.value.code == 2
    assert "--seeds: must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["rank", "losses"])
    assert "invalid choice: 'losses'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rank", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("validation", "never the test set", "500 updates per run", "10 seeds",
                   "Welch t-test", "--quick", "--plot", "LeCun init for SELU"):  # fmt: skip
        assert phrase in " ".join(text.split()), phrase
