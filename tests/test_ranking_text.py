"""Ranks and the ranking and verdict tables."""

from __future__ import annotations

import re

from ranking_helpers import make_ranking, make_result

from nnrs_jax import ranking
from nnrs_jax.ranking import Protocol, Ranking


def test_ranks_and_tables():
    r = make_ranking(A=[0.9, 0.92], B=[0.95, 0.97], C=[0.9, 0.92])
    assert r.ranks() == {"A": 2, "B": 1, "C": 2}
    table = ranking.format_ranking(r).splitlines()
    assert table[0].split("|")[1:-1] == [" variant ", " lr       ", " test % mean ± sd ", " rank "]
    assert re.fullmatch(r"\| B +\| 0\.01 +\| 96\.00 ± 1\.41 +\| +1 \|", table[3])
    verdicts = ranking.format_verdicts(ranking.check_claim(r, "B > A"))
    assert "| B > A |" in verdicts and verdicts.rstrip().endswith("|")
    edge = Ranking((make_result("E", [0.9, 0.91], lr=0.1),), Protocol(), 1000)
    assert "| 0.1*" in ranking.format_ranking(edge)
    assert "* the best rate of the grid lies on its edge" in ranking.format_ranking(edge)
