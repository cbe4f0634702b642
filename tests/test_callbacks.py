"""Callbacks: early stopping, CSV log, backup and restore (with real processes killed)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_trees_equal, toy_classes

import nnrs_jax as nj

WORKER = Path(__file__).with_name("backup_worker.py")


@pytest.fixture
def toy():
    return toy_classes(160)


def model() -> nj.Layer:
    return nj.serial(nj.dense(6, 16), nj.relu(), nj.dropout(0.2), nj.dense(16, 3))


def run(x, y, *, epochs=4, **kwargs) -> nj.FitResult:
    return nj.fit(model(), nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                  epochs=epochs, batch_size=32, progress=False, **kwargs)  # fmt: skip


class Recorder(nj.callbacks.Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.stop_after = stop_after

    def on_train_begin(self, run):
        self.calls.append(("begin", run.done, run.total, run.unit))

    def on_log(self, run, logs):
        self.calls.append(("log", run.done, sorted(logs)))
        if self.stop_after is not None and run.done >= self.stop_after:
            run.stop_training = True

    def on_train_end(self, run):
        self.calls.append(("end", run.done, run.stopped))


def test_the_protocol_calls_begin_each_log_point_and_end(toy):
    recorder = Recorder()
    result = run(*toy, epochs=3, validation_split=0.25, callbacks=[recorder])
    assert recorder.calls[0] == ("begin", 0, 3, "epoch")
    logs = [c for c in recorder.calls if c[0] == "log"]
    assert [c[1] for c in logs] == [1, 2, 3]
    assert logs[0][2] == ["accuracy", "eval_accuracy", "eval_loss", "loss"]
    assert recorder.calls[-1] == ("end", 3, None)
    assert result.stopped is None


def test_a_callback_stops_training_at_a_log_point(toy):
    recorder = Recorder(stop_after=2)
    result = run(*toy, epochs=10, callbacks=[recorder])
    assert result.stopped == "callback"
    assert result.step == 2 * (160 // 32)
    assert recorder.calls[-1] == ("end", 2, "callback")
    assert len(result.history["loss"]) == 2


def test_full_batch_log_points_every_log_every_steps(toy):
    recorder = Recorder()
    nj.fit(model(), nj.cross_entropy, nj.adam(1e-2), *toy, key=jax.random.key(0), steps=25,
           log_every=10, callbacks=[recorder], progress=False)  # fmt: skip
    assert [c[1] for c in recorder.calls if c[0] == "log"] == [10, 20, 25]


def test_early_stopping_waits_patience_and_restores_the_best(toy):
    x, y = toy
    stop = nj.callbacks.EarlyStopping("eval_loss", patience=2, restore_best=True)
    # A learning rate far too high: the validation loss gets worse after a few epochs.
    result = nj.fit(model(), nj.cross_entropy, nj.sgd(30.0), x, y, key=jax.random.key(0),
                    epochs=40, batch_size=32, validation_split=0.25, callbacks=[stop],
                    on_nonfinite="warn", progress=False)  # fmt: skip
    losses = np.nan_to_num(result.history["eval_loss"], nan=np.inf)
    best = int(np.argmin(losses))
    assert result.stopped == "callback"
    assert stop.best_index == best + 1
    assert stop.stopped_at == best + 1 + 3 == len(losses)
    # The params of the best epoch are back: evaluating them gives its validation loss.
    report = nj.evaluate(model(), result.params, x[120:], y[120:])
    assert report.loss == pytest.approx(losses[best], rel=1e-5)


def test_early_stopping_min_delta_and_mode():
    assert nj.callbacks.EarlyStopping("eval_accuracy").mode == "max"
    assert nj.callbacks.EarlyStopping("eval_r2").mode == "max"
    assert nj.callbacks.EarlyStopping("eval_mse").mode == "min"


def test_early_stopping_names_a_missing_monitor(toy):
    stop = nj.callbacks.EarlyStopping("eval_loss")
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor 'eval_loss'.*validation_split"):
        run(*toy, callbacks=[stop])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: nj.callbacks.EarlyStopping(patience=-1), ValueError, "patience"),
        (lambda: nj.callbacks.EarlyStopping(mode="up"), ValueError, "mode"),
        (lambda: nj.callbacks.EarlyStopping(min_delta=float("nan")), ValueError, "min_delta"),
        (lambda: nj.callbacks.BackupAndRestore("d", every=0), ValueError, "every"),
        (lambda: nj.callbacks.BackupAndRestore(3), TypeError, "directory"),
        (lambda: nj.callbacks.CSVLogger("a.csv", separator=";;"), ValueError, "separator"),
    ],
)
def test_bad_callback_settings(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_fit_refuses_a_callback_that_is_not_one(toy):
    with pytest.raises(TypeError, match="fit: callbacks must be a list"):
        run(*toy, callbacks=nj.callbacks.CSVLogger("x.csv"))
    with pytest.raises(TypeError, match="is not a callback"):
        run(*toy, callbacks=[print])


def test_csv_logger_writes_a_row_per_epoch(toy, tmp_path):
    path = tmp_path / "log.csv"
    result = run(*toy, epochs=3, validation_split=0.25, callbacks=[nj.callbacks.CSVLogger(path)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "eval_loss", "eval_accuracy"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], result.history["loss"])
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], result.history["eval_loss"])


def test_a_stopped_run_removes_its_backup_and_a_kept_one_needs_the_same_call(toy, tmp_path):
    x, y = toy
    backup = nj.callbacks.BackupAndRestore(tmp_path / "backup")
    stopper = Recorder(stop_after=2)
    first = run(x, y, epochs=4, callbacks=[backup, stopper])
    # A callback's stop counts as the end: the backup is removed, as Keras does.
    assert first.stopped == "callback" and not (tmp_path / "backup").exists()
    keep = nj.callbacks.BackupAndRestore(tmp_path / "kept", keep=True)
    run(x, y, epochs=2, callbacks=[keep])  # leaves a backup of epoch 2 ...
    # ... which only a call with the same settings accepts
    with pytest.raises(ValueError, match=r"another run.*total: backup 2, this call 4"):
        run(x, y, epochs=4, callbacks=[keep])


def test_an_interrupted_run_keeps_its_backup_and_the_same_call_resumes(toy, tmp_path):
    x, y = toy
    straight = run(x, y, epochs=4)

    class CtrlC(nj.callbacks.Callback):
        def on_log(self, run, logs):
            if run.done == 2:
                os.kill(os.getpid(), signal.SIGINT)

    backup = nj.callbacks.BackupAndRestore(tmp_path, every=3)
    stopped = run(x, y, epochs=4, callbacks=[backup, CtrlC()])
    assert stopped.stopped == "interrupted" and stopped.step == 2 * 5
    assert (tmp_path / "backup.npz").is_file()  # written at the interruption, not on schedule
    resumed = run(x, y, epochs=4, callbacks=[backup])
    assert backup.restored_step == 10
    assert resumed.stopped is None
    assert_trees_equal(resumed.train_state, straight.train_state)
    np.testing.assert_array_equal(resumed.history["loss"], straight.history["loss"])
    assert not (tmp_path / "backup.npz").exists()


def test_a_backup_of_another_model_or_key_is_refused(toy, tmp_path):
    x, y = toy
    keep = nj.callbacks.BackupAndRestore(tmp_path, keep=True)
    run(x, y, epochs=1, callbacks=[keep])
    with pytest.raises(ValueError, match="another key"):
        nj.fit(model(), nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(1),
               epochs=1, batch_size=32, progress=False, callbacks=[keep])  # fmt: skip
    other = nj.serial(nj.dense(6, 8), nj.relu(), nj.dense(8, 3))
    with pytest.raises(ValueError, match="does not fit this model"):
        nj.fit(other, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
               epochs=1, batch_size=32, progress=False, callbacks=[keep])  # fmt: skip


def _start(directory: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "0"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(directory), str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _finish(process: subprocess.Popen, timeout: float = 120) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err
    return out


def _kill_after(process: subprocess.Popen, line: str | None, delay: float) -> bool:
    """SIGKILL ``process`` ``delay`` s after it prints ``line`` (or after starting).

    Returns whether it was still running when killed.
    """
    try:
        if line is not None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                text = process.stdout.readline()
                if text.strip() == line or not text:
                    break
        time.sleep(delay)
        return process.poll() is None
    finally:
        process.kill()
        process.communicate()


def _whole_files_only(directory: Path) -> None:
    """Every file under its final name loads completely; a killed write left only a .tmp."""
    for path in directory.iterdir():
        if path.name.endswith(".tmp"):
            continue
        assert path.name == "backup.npz"
        nj.load_meta(path)  # raises on a truncated archive
        with np.load(path) as archive:
            for name in archive.files:
                assert archive[name] is not None  # reading every member checks its CRC


@pytest.mark.slow
def test_sigkill_at_several_points_then_the_same_call_finishes_bit_identical(tmp_path):
    """Killed with SIGKILL before the first backup, after epochs 2 and 4, and in epoch 7;
    each time the same command resumes; the end equals an uninterrupted run bit for bit."""
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    directory = tmp_path / "backup"
    _finish(_start(tmp_path / "unused", straight, "--no-backup"))
    for line, delay in ((None, 0.5), ("logged 2", 0.0), ("logged 4", 0.0), ("logged 6", 0.03)):
        assert _kill_after(_start(directory, resumed), line, delay)
        if directory.exists():
            _whole_files_only(directory)
    assert (directory / "backup.npz").is_file()
    out = _finish(_start(directory, resumed))
    first = int(out.split()[1])  # the first log point of the resumed run
    assert first in (7, 8), out  # epoch 6's backup, or 7's if it was written before the kill
    assert not directory.exists()  # removed at the end
    like = nj.serial(nj.dense(32, 64), nj.relu(), nj.dropout(0.3), nj.dense(64, 3))
    params = like.init(jax.random.key(0))
    a = nj.load(straight, params=params, opt_state=nj.adam(1e-3).init(params))
    b = nj.load(resumed, params=params, opt_state=nj.adam(1e-3).init(params))
    assert a.step == b.step == 8 * 40
    assert_trees_equal((a.params, a.opt_state), (b.params, b.opt_state))
