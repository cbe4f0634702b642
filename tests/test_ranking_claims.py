"""The seed's claims: parsing, and the verdicts of each claimed pair."""

from __future__ import annotations

import pytest
from ranking_helpers import make_ranking

from nnrs_jax import ranking


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


def test_verdicts():
    r = make_ranking(
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
