"""Figures of training runs and rankings (matplotlib, imported only when a figure is drawn).

The library itself does not need matplotlib; install it with ``pip install 'nnrs-jax[notebooks]'``.
Each function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state, no
window) and, given ``path``, also writes it there as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nnrs_jax.ranking import Ranking

__all__ = ["plot_history", "plot_ranking"]


def _figure(caller: str, **kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"{caller} needs matplotlib, which nnrs_jax does not install: "
            "pip install 'nnrs-jax[notebooks]' (or pip install matplotlib)"
        ) from error
    return Figure(**kwargs)


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return fig


def plot_history(
    history: dict[str, np.ndarray], path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """Training curves of a `fit` run: loss and accuracy against step or epoch.

    Full batch (``history["step"]``): the metrics of each step's parameters before its update.
    Mini-batch (``history["epoch"]``): each epoch's means, drawn at its end (epoch 1, 2, ...).
    Evaluation metrics (``eval_loss``, ``eval_accuracy``), when present, are drawn beside them.
    The loss axis is logarithmic when the loss spans more than a factor of 10.

    Args:
        history: `FitResult.history`.
        path: where to write the PNG, if given.
        title: the figure's title.

    Examples:
        >>> import numpy as np
        >>> from nnrs_jax.plotting import plot_history
        >>> history = {"step": np.arange(3), "loss": np.array([2.3, 1.2, 0.8]),
        ...            "accuracy": np.array([0.1, 0.6, 0.8])}
        >>> [ax.get_ylabel() for ax in plot_history(history).axes]
        ['loss', 'accuracy %']
    """
    if "step" in history:
        unit, x, eval_x = "step", history["step"], history.get("eval_step")
    elif "epoch" in history:
        unit, x, eval_x = "epoch", history["epoch"] + 1, history.get("eval_epoch")
    else:
        raise ValueError(
            f"plot_history: history must hold 'step' or 'epoch' (a FitResult.history), got keys "
            f"{sorted(history)}"
        )
    fig = _figure("plot_history", figsize=(9, 3.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    marker = "o" if len(x) <= 30 else None
    loss_ax.plot(x, history["loss"], marker=marker, label="training")
    acc_ax.plot(x, 100 * np.asarray(history["accuracy"]), marker=marker, label="training")
    if eval_x is not None:
        loss_ax.plot(eval_x, history["eval_loss"], marker="o", label="evaluation")
        acc_ax.plot(eval_x, 100 * np.asarray(history["eval_accuracy"]), marker="o",
                    label="evaluation")  # fmt: skip
        loss_ax.legend()
        acc_ax.legend()
    losses = np.asarray(history["loss"], np.float64)
    finite = losses[np.isfinite(losses) & (losses > 0)]
    # A log scale only pays when the loss falls by more than a factor 10; below that, its few
    # tick labels say less than a linear axis.
    spread = finite.size > 0 and finite.max() > 10 * finite.min()
    loss_ax.set(xlabel=unit, ylabel="loss", yscale="log" if spread else "linear")
    acc_ax.set(xlabel=unit, ylabel="accuracy %")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ranking(
    ranking: Ranking, path: str | Path | None = None, *, title: str | None = None
) -> Figure:
    """A `Ranking` in two panels: mean training-loss curves with a ±1 sd band per variant, and
    the mean test accuracy of each variant with ±1 sd error bars, best on top.

    Full-batch curves have a point per step, mini-batch ones a point per epoch (its mean, drawn at
    the epoch's middle). The test panel labels each variant with its chosen learning rate.

    Args:
        ranking: what `nnrs_jax.ranking.rank` returned.
        path: where to write the PNG, if given.
        title: the figure's title.
    """
    results = ranking.results
    fig = _figure("plot_ranking", figsize=(11, 0.45 * len(results) + 2.8), layout="constrained")
    curve_ax, test_ax = fig.subplots(1, 2, width_ratios=(1.4, 1))
    colors = {r.name: f"C{i % 10}" for i, r in enumerate(results)}
    for r in results:
        mean, sd = np.mean(r.curve_loss, axis=1), np.std(r.curve_loss, axis=1, ddof=1)
        marker = "o" if len(r.curve_steps) <= 30 else None
        curve_ax.plot(r.curve_steps, mean, color=colors[r.name], marker=marker, markersize=3,
                      label=r.name)  # fmt: skip
        curve_ax.fill_between(r.curve_steps, np.maximum(mean - sd, 1e-3), mean + sd,
                              color=colors[r.name], alpha=0.2, linewidth=0)  # fmt: skip
    p = ranking.protocol
    curve_ax.set(xlabel="step", ylabel="training loss (mean ± 1 sd)", yscale="log",
                 title=f"{p.steps} steps, {p.seeds} seeds")  # fmt: skip
    curve_ax.grid(alpha=0.3, which="both")
    curve_ax.legend(fontsize="small", ncol=2)
    order = sorted(results, key=lambda r: r.mean)
    y = np.arange(len(order))
    for i, r in enumerate(order):
        test_ax.errorbar(r.mean, i, xerr=r.sd, fmt="o", color=colors[r.name], capsize=4)
        # each seed as a small dot just below its variant's bar
        test_ax.plot(100 * r.test, np.full(len(r.test), i - 0.22), ".", color=colors[r.name],
                     alpha=0.5, markersize=4)  # fmt: skip
    test_ax.set_yticks(y, [f"{r.name} (lr {r.learning_rate:g})" for r in order])
    test_ax.set(xlabel="test accuracy % (mean ± 1 sd; dots: seeds)", title="test accuracy")
    test_ax.grid(alpha=0.3, axis="x")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
