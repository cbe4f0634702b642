"""Hand-made rankings shared by the ranking tests."""

from __future__ import annotations

import numpy as np

from nnrs_jax.ranking import Protocol, Ranking, VariantResult


def make_result(name: str, test: list[float], lr: float = 0.01) -> VariantResult:
    """A `VariantResult` with the test accuracies ``test`` and learning rate ``lr``."""
    return VariantResult(
        name, lr, (0.001, 0.01, 0.1), np.array([0.8, 0.9, 0.85]), np.asarray(test),
        np.array([0.5, 1.5]), np.ones((2, len(test))), 0, 1.0,
    )  # fmt: skip


def make_ranking(**tests: list[float]) -> Ranking:
    """A `Ranking` of the variants named by the keywords, with those test accuracies."""
    return Ranking(tuple(make_result(n, t) for n, t in tests.items()), Protocol(seeds=5), 1000)
