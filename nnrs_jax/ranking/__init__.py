"""Rank training variants (optimizers, activations) on MNIST fairly, and test a claimed order.

* `nnrs_jax.ranking.protocol`: the variants, the protocol every variant of a ranking follows (a
  learning rate chosen on a validation split, then seeds trained at it with `fit_many` and
  scored on the test set), and `rank`, which runs it.
* `nnrs_jax.ranking.stats`: Welch's t-test.
* `nnrs_jax.ranking.claims`: the seed's claimed orders and `check_claim`, which tests a claim
  pair by pair.
* `nnrs_jax.ranking.text`: the protocol in words, the ranking and verdict tables, a summary.
"""

from nnrs_jax.ranking.claims import (
    ACTIVATION_CLAIM,
    OPTIMIZER_CLAIM,
    Verdict,
    check_claim,
    parse_claim,
)
from nnrs_jax.ranking.protocol import (
    FULL,
    QUICK,
    Protocol,
    Ranking,
    Variant,
    VariantResult,
    activation_variants,
    optimizer_variants,
    rank,
)
from nnrs_jax.ranking.stats import TTest, welch_t_test
from nnrs_jax.ranking.text import describe, format_ranking, format_verdicts, summary

__all__ = [
    "ACTIVATION_CLAIM",
    "FULL",
    "OPTIMIZER_CLAIM",
    "QUICK",
    "Protocol",
    "Ranking",
    "TTest",
    "Variant",
    "VariantResult",
    "Verdict",
    "activation_variants",
    "check_claim",
    "describe",
    "format_ranking",
    "format_verdicts",
    "optimizer_variants",
    "parse_claim",
    "rank",
    "summary",
    "welch_t_test",
]
