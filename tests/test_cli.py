"""The real console script in a subprocess, on small settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "nnrs-jax"
SCRIPT = [str(BIN)] if BIN.exists() else [shutil.which("nnrs-jax") or "nnrs-jax"]
ACCURACY = re.compile(r"test accuracy: (\d+\.\d\d)%\n\Z")


def run(*args: str, tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NNRS_JAX_CACHE": str(tmp_path / "jit")} if tmp_path else None
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def needs_mnist(mnist_test):
    return mnist_test


def test_train_full_batch_save_and_evaluate(needs_mnist, tmp_path):
    npz, csv = tmp_path / "model.npz", tmp_path / "csv"
    done = run("train", "--arch", "784-16-10", "--activation", "elu", "--optimizer", "nadam",
               "--lr", "0.01", "--steps", "12", "--regularizer", "elastic_net:1e-4,1e-4",
               "--no-progress", "--save", str(npz), "--save-csv", str(csv),
               tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Confusion Matrix:" in done.stdout and "Iteration 10: loss = " in done.stdout
    accuracy = float(ACCURACY.search(done.stdout).group(1))
    assert 50 < accuracy <= 100
    assert sorted(p.name for p in csv.iterdir()) == ["b0.csv", "b1.csv", "w0.csv", "w1.csv"]
    again = run("evaluate", "--load", str(npz), tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert float(ACCURACY.search(again.stdout).group(1)) == accuracy


def test_module_entry_point_minibatch_with_progress(needs_mnist, tmp_path):
    env = {**os.environ, "NNRS_JAX_CACHE": str(tmp_path / "jit")}
    done = subprocess.run(
        [sys.executable, "-m", "nnrs_jax", "train", "--arch", "784-32-10", "--epochs", "1",
         "--batch-size", "1000", "--schedule", "cosine"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Epoch 1: loss = " in done.stdout and ACCURACY.search(done.stdout)
    assert "epoch" in done.stderr  # the progress bar


def test_reproduce_one_row(needs_mnist, tmp_path):
    done = run("reproduce", "--rows", "2", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split("|")[1:] == [" seed % ", " ours %"]
    assert re.fullmatch(r"784-16-10 He ELU Nadam 0\.01 +\|  94\.43 \| +\d+\.\d\d", lines[2])
    assert re.fullmatch(r"[01]/1 rows within 1\.5 points of the seed or better .*", lines[3])
    assert len(lines) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--arch", "784-x-10"], "--arch"),
        (["train", "--steps", "3", "--epochs", "2"], "not allowed with"),
        (["train", "--steps", "3", "--batch-size", "5"], "--batch-size"),
        (["train", "--regularizer", "l3:1"], "--regularizer"),
        (["train", "--optimizer", "adagrad"], "invalid choice"),
        (["reproduce", "--rows", "9"], "--rows"),
        (["evaluate"], "--load"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_usage(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr and message in done.stderr


def test_corrupt_data_is_a_clear_error(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03 not really an idx file")
    done = run("train", "--data-dir", str(tmp_path), "--steps", "1")
    assert done.returncode == 1
    assert "checksum" in done.stderr and "train-" in done.stderr
    assert "Traceback" not in done.stderr
