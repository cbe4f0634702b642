"""Figures (`nnrs_jax.plotting`), ``train --plot`` / ``--history``; matplotlib stays optional."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nnrs_jax import cli, plotting
from nnrs_jax.ranking import Protocol, Ranking, VariantResult

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_library_does_not_import_matplotlib():
    code = (
        "import sys, nnrs_jax, nnrs_jax.cli, nnrs_jax.plotting, nnrs_jax.ranking; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_clear_error_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    history = {"step": np.arange(2), "loss": np.ones(2), "accuracy": np.ones(2)}
    with pytest.raises(ImportError, match=r"plot_history needs matplotlib.*nnrs-jax\[notebooks\]"):
        plotting.plot_history(history)


matplotlib = pytest.importorskip("matplotlib", reason="the figures need matplotlib")


def test_plot_history_full_batch(tmp_path):
    history = {
        "step": np.arange(5),
        "loss": np.array([2.3, 1.5, 1.0, 0.8, 0.7]),
        "accuracy": np.array([0.1, 0.5, 0.7, 0.8, 0.85]),
    }
    path = tmp_path / "curves.png"
    fig = plotting.plot_history(history, path, title="run")
    assert path.read_bytes().startswith(PNG)
    loss_ax, acc_ax = fig.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), history["step"])
    np.testing.assert_array_equal(loss_ax.lines[0].get_ydata(), history["loss"])
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), 100 * history["accuracy"])
    assert loss_ax.get_yscale() == "linear" and loss_ax.get_xlabel() == "step"
    assert fig.get_suptitle() == "run"
    # a loss that falls by more than a factor 10 gets a log axis
    steep = {**history, "loss": np.array([2.3, 1.0, 0.3, 0.1, 0.05])}
    assert plotting.plot_history(steep).axes[0].get_yscale() == "log"


def test_plot_history_epochs_with_evaluation():
    history = {
        "epoch": np.arange(3),
        "loss": np.array([1.0, 0.5, 0.4]),
        "accuracy": np.array([0.7, 0.85, 0.9]),
        "eval_epoch": np.array([1, 2, 3]),
        "eval_loss": np.array([0.6, 0.45, 0.42]),
        "eval_accuracy": np.array([0.8, 0.86, 0.88]),
    }
    loss_ax, acc_ax = plotting.plot_history(history).axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])  # epochs from 1
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), history["eval_loss"])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), 100 * history["eval_accuracy"])
    assert loss_ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["training", "evaluation"]


def test_plot_history_rejects_other_dicts():
    with pytest.raises(ValueError, match=r"plot_history: history must hold 'step' or 'epoch'"):
        plotting.plot_history({"loss": np.ones(3)})


def test_plot_ranking(tmp_path):
    def result(name, test, lr):
        loss = np.array([[2.0, 2.1, 1.9], [1.0, 1.2, 0.8]])
        return VariantResult(name, lr, (lr,), np.array([0.9]), np.asarray(test),
                             np.array([0.5, 1.5]), loss, 0, 1.0)  # fmt: skip

    ranking = Ranking(
        (result("A", [0.90, 0.92, 0.91], 0.01), result("B", [0.95, 0.96, 0.94], 0.3)),
        Protocol(steps=2, seeds=3),
        1000,
    )
    path = tmp_path / "rank.png"
    fig = plotting.plot_ranking(ranking, path)
    assert path.read_bytes().startswith(PNG)
    curve_ax, test_ax = fig.axes
    a_line = curve_ax.lines[0]
    np.testing.assert_allclose(a_line.get_ydata(), [2.0, 1.0])  # the mean over seeds
    band = curve_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), 0.8) and np.isclose(band.max(), 2.1)  # mean ± 1 sd
    # best on top: B (95 %) above A (91 %), each with its learning rate
    labels = [t.get_text() for t in test_ax.get_yticklabels()]
    assert labels == ["A (lr 0.01)", "B (lr 0.3)"]


@pytest.mark.slow
def test_train_writes_plot_and_history(mnist_train, mnist_test, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNRS_JAX_CACHE", str(tmp_path / "jit"))
    png, csv = tmp_path / "curves.png", tmp_path / "history.csv"
    argv = ["train", "--arch", "784-16-10", "--steps", "12", "--optimizer", "nadam", "--lr",
            "0.01", "--no-progress", "--plot", str(png), "--history", str(csv)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)
    lines = csv.read_text().splitlines()
    assert lines[0] == "step,loss,accuracy" and len(lines) == 13
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(rows[:, 0], np.arange(12))
    # the CSV holds what the run printed: "Iteration 10: loss = ..., train accuracy = ...%"
    printed = out.split("Iteration 10: loss = ")[1].split("\n")[0]
    loss, accuracy = printed.split(", train accuracy = ")
    assert rows[10, 1] == pytest.approx(float(loss), abs=1e-6)
    assert 100 * rows[10, 2] == pytest.approx(float(accuracy.rstrip("%")), abs=0.005)
    assert rows[-1, 1] < rows[0, 1]


@pytest.mark.slow
def test_train_history_per_epoch(mnist_train, mnist_test, tmp_path, monkeypatch):
    monkeypatch.setenv("NNRS_JAX_CACHE", str(tmp_path / "jit"))
    csv = tmp_path / "history.csv"
    argv = ["train", "--arch", "784-16-10", "--epochs", "2", "--batch-size", "1000",
            "--no-progress", "--history", str(csv)]  # fmt: skip
    assert cli.main(argv) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
