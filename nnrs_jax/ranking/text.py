"""The protocol, a ranking and its verdicts as text: a paragraph, Markdown tables, one line."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nnrs_jax.ranking.claims import Verdict
from nnrs_jax.ranking.protocol import Protocol, Ranking, VariantResult

__all__ = ["describe", "format_ranking", "format_verdicts", "summary"]


def describe(protocol: Protocol, available: int = 50_000) -> str:
    """The protocol in words, with its numbers.

    ``available``: the training images left after the validation split, all of which are used
    when ``protocol.train_size`` is None.
    """
    p = protocol
    train_size = available if p.train_size is None else p.train_size
    per_epoch = train_size // p.batch_size
    epochs = p.steps / per_epoch if per_epoch else math.nan
    return (
        f"Each variant: the learning rate with the best validation accuracy on its log-grid "
        f"(one run per rate; {p.validation_size} training images held out for validation, never "
        f"the test set), then {p.seeds} seeds at that rate in one vmapped fit_many call, scored "
        f"on the test set. Budget: {p.steps} updates per run for every variant, "
        f"mini-batch ones in batches of {p.batch_size} ({epochs:g} epochs of the {train_size} "
        f"training images), GD in full-batch steps over the same images. Seed i starts from "
        f"the same initial weights in every variant (where the initializer agrees) and sees the "
        f"same batches. Claimed pairs: Welch t-test, two-sided, alpha = {p.alpha:g}."
    )


def _edge(r: VariantResult) -> bool:
    return r.learning_rate in (r.grid[0], r.grid[-1])


def format_ranking(ranking: Ranking) -> str:
    """The table ``variant | lr | test % mean ± sd | rank`` (Markdown), in the variants' order.

    A learning rate on the edge of its grid is starred; diverged seeds are noted.
    """
    ranks = ranking.ranks()
    width = max(len("variant"), *(len(r.name) for r in ranking.results))
    lines = [
        f"| {'variant':<{width}} | lr       | test % mean ± sd | rank |",
        f"|{'-' * (width + 2)}|----------|------------------|------|",
    ]
    for r in ranking.results:
        lr = f"{r.learning_rate:g}" + ("*" if _edge(r) else "")
        cell = f"{r.mean:.2f} ± {r.sd:.2f}"
        lines.append(f"| {r.name:<{width}} | {lr:<8} | {cell:<16} | {ranks[r.name]:>4} |")
    if any(_edge(r) for r in ranking.results):
        lines.append("* the best rate of the grid lies on its edge")
    lines += [f"{r.name}: {r.diverged} seed(s) diverged" for r in ranking.results if r.diverged]
    return "\n".join(lines)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The table ``claim | difference | p | verdict`` (Markdown), one row per claimed pair."""
    claims = [f"{v.better} {v.relation} {v.worse}" for v in verdicts]
    width = max(len("claim"), *(len(c) for c in claims))
    lines = [
        f"| {'claim':<{width}} | difference (points) | p (Welch) | verdict             |",
        f"|{'-' * (width + 2)}|---------------------|-----------|---------------------|",
    ]
    for claim, v in zip(claims, verdicts):
        lines.append(
            f"| {claim:<{width}} | {v.difference:>+19.2f} | {v.test.p:>9.3f} | {v.verdict:<19} |"
        )
    return "\n".join(lines)


def summary(what: str, verdicts: Sequence[Verdict], ranking: Ranking) -> str:
    """One line: how many claimed orderings hold, and how the others fared."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    held = counts.pop("holds", 0)
    others = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    p = ranking.protocol
    return (
        f"{what}: {held} of {len(verdicts)} claimed orderings hold"
        + (f" ({others})" if others else "")
        + f"; Welch t-test, two-sided, alpha = {p.alpha:g}, {p.seeds} seeds per variant"
    )
