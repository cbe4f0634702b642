"""The seed's claimed orders and their verdicts.

A claimed order such as ``"RMSProp ~ Nadam > AdaMax"`` is checked pair by pair along the claim
with Welch's t-test on the seeds' test accuracies (two-sided, level ``alpha``): ``A > B`` holds
when A is significantly better, is reversed when B is significantly better, and is otherwise not
distinguishable; ``A ~ B`` holds when the two are not distinguishable and differs otherwise.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from nnrs_jax.ranking.protocol import Ranking
from nnrs_jax.ranking.stats import TTest, welch_t_test

__all__ = ["ACTIVATION_CLAIM", "OPTIMIZER_CLAIM", "Verdict", "check_claim", "parse_claim"]

OPTIMIZER_CLAIM = "RMSProp ~ Nadam > AdaMax > Adam > Nesterov > Momentum > SGD > GD"
ACTIVATION_CLAIM = "SELU > ELU > leaky ReLU > ReLU > tanh > logistic"


class Verdict(NamedTuple):
    """One pair of a claimed order and what the data say about it.

    Attributes:
        better, worse: the names, as claimed (``better > worse`` or ``better ~ worse``).
        relation: ``">"`` or ``"~"``.
        difference: mean test accuracy of ``better`` minus that of ``worse``, in points.
        test: the Welch t-test of that difference.
        verdict: ``"holds"``, ``"reversed"`` or ``"not distinguishable"`` for ``>``;
            ``"holds"`` or ``"differs"`` for ``~``.
    """

    better: str
    relation: str
    worse: str
    difference: float
    test: TTest
    verdict: str


def parse_claim(claim: str) -> list[tuple[str, str, str]]:
    """``"A ~ B > C"`` -> ``[("A", "~", "B"), ("B", ">", "C")]``: the claim's adjacent pairs.

    Examples:
        >>> from nnrs_jax.ranking import parse_claim
        >>> parse_claim("SELU > ELU > leaky ReLU")
        [('SELU', '>', 'ELU'), ('ELU', '>', 'leaky ReLU')]
    """
    parts = [p.strip() for p in re.split(r"\s*([>~])\s*", claim.strip())]
    names, relations = parts[::2], parts[1::2]
    if len(names) < 2 or not all(names):
        raise ValueError(
            f"parse_claim: a claim is names joined by '>' or '~', e.g. 'A ~ B > C', got {claim!r}"
        )
    return [(names[i], relations[i], names[i + 1]) for i in range(len(relations))]


def check_claim(ranking: Ranking, claim: str) -> list[Verdict]:
    """Test each adjacent pair of ``claim`` on the seeds' test accuracies of ``ranking``.

    The Welch t-test runs at the protocol's level ``alpha``, pair by pair, without correction
    for the number of pairs.
    """
    alpha = ranking.protocol.alpha
    verdicts = []
    for better, relation, worse in parse_claim(claim):
        a, b = ranking.result(better), ranking.result(worse)
        test = welch_t_test(a.test, b.test)
        diff = a.mean - b.mean
        distinct = test.p < alpha
        if relation == "~":
            verdict = "differs" if distinct else "holds"
        elif not distinct:
            verdict = "not distinguishable"
        else:
            verdict = "holds" if diff > 0 else "reversed"
        verdicts.append(Verdict(better, relation, worse, diff, test, verdict))
    return verdicts
