"""Host callbacks for `fit`: early stopping, backup and restore, a CSV log.

Each is a `Callback` (see there for the protocol: ``on_train_begin``, ``on_log`` at each log
point, ``on_train_end``, and ``run.stop_training``). They run on the host at log points only,
so they never slow the compiled epoch down.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax import checkpoint, parallel
from nnrs_jax._validate import check_bool, check_float, check_int
from nnrs_jax.train.loop import Callback, Run
from nnrs_jax.train.state import TrainState

__all__ = ["BackupAndRestore", "CSVLogger", "Callback", "EarlyStopping", "Run"]

_MAXIMIZED = ("accuracy", "r2", "f1", "precision", "recall")


class EarlyStopping(Callback):
    """Stop when a logged value has stopped improving (Keras's ``EarlyStopping``).

    At each log point ``value = logs[monitor]`` improves when ``value < best − min_delta``
    (``mode="min"``) or ``value > best + min_delta`` (``mode="max"``); after ``patience`` log
    points in a row without improvement, training stops (`FitResult.stopped` is
    ``"callback"``). ``mode="auto"`` maximizes names holding ``accuracy``, ``r2``, ``f1``,
    ``precision`` or ``recall`` and minimizes the rest. With ``restore_best=True`` the
    parameters and model state of the best log point are put back at the end (the optimizer
    state and the step stay those of the last point, as in Keras).

    Args:
        monitor: a logged name, e.g. ``"eval_loss"`` (needs ``eval_data`` or
            ``validation_split``), ``"eval_accuracy"`` or ``"loss"``.
        patience: log points without improvement before stopping (≥ 0).
        min_delta: the least change that counts as an improvement (≥ 0).
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        restore_best: put the best parameters back at the end.
        start_from: log points to skip before monitoring (warm-up).

    Attributes:
        best: the best value seen; ``best_index``: the epoch (or step) it was logged at;
        stopped_at: the epoch (or step) training stopped at, or ``None``.

    Examples:
        >>> import jax, numpy as np, nnrs_jax as nj
        >>> x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)
        >>> model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
        >>> stop = nj.callbacks.EarlyStopping("eval_loss", patience=2, restore_best=True)
        >>> result = nj.fit(model, nj.cross_entropy, nj.sgd(1e-9), x, y, key=jax.random.key(0),
        ...                 epochs=50, batch_size=32, validation_split=0.25, callbacks=[stop],
        ...                 progress=False)
        >>> result.stopped, stop.stopped_at
        ('callback', 4)
    """

    def __init__(
        self,
        monitor: str = "eval_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: Literal["auto", "min", "max"] = "auto",
        restore_best: bool = False,
        start_from: int = 0,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping: monitor must be a logged name, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        restore_best = check_bool("EarlyStopping", "restore_best", restore_best)
        self.monitor = monitor
        self.patience = check_int("EarlyStopping", "patience", patience, low=0)
        self.min_delta = check_float("EarlyStopping", "min_delta", min_delta, low=0.0)
        self.start_from = check_int("EarlyStopping", "start_from", start_from, low=0)
        if mode == "auto":
            mode = "max" if any(word in monitor for word in _MAXIMIZED) else "min"
        self.mode, self.restore_best = mode, restore_best

    def on_train_begin(self, run: Run) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_index: int | None = None
        self.stopped_at: int | None = None
        self.wait, self.seen, self._kept = 0, 0, None

    def on_log(self, run: Run, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not among the logged values "
                f"{sorted(logs)}; monitoring eval_* needs fit(..., eval_data=) or "
                "validation_split="
            )
        self.seen += 1
        if self.seen <= self.start_from:
            return
        value = logs[self.monitor]
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        index = int(run.train_state.step) // run.steps_per_unit
        if better:
            self.best, self.best_index, self.wait = value, index, 0
            if self.restore_best:
                self._kept = jax.device_get((run.train_state.params, run.train_state.state))
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_at = index
            run.stop_training = True

    def on_train_end(self, run: Run) -> None:
        if self.restore_best and self._kept is not None:
            params, state = jax.device_put(self._kept)
            run.train_state = run.train_state._replace(params=params, state=state)


class BackupAndRestore(Callback):
    """Back the run up as it goes, and resume it after a crash (Keras's ``BackupAndRestore``).

    Every ``every`` log points (epochs, or ``log_every`` full-batch steps) the whole
    `TrainState` (params, model state, optimizer state, step, key) and the history so far are
    written to ``directory/backup.npz``, atomically: to a temporary file in the folder,
    flushed, synced and renamed over the old backup, so the backup is always whole. When the
    run is interrupted (Ctrl-C, a crash, a kill, a preemption), the backup stays; calling the
    same `fit` again with this callback resumes from it and finishes with the parameters of an
    uninterrupted run, bit for bit (the steps' keys and shuffles depend only on the step and
    epoch). At the end of a run that finished (or that a callback stopped) the backup is
    removed, unless ``keep=True``. On Ctrl-C a backup of the point reached is written.

    A backup made by a different call (other epochs, batch size, number of examples, key or
    model) is refused with an error that says what differs, rather than silently mixed in.
    Temporary files left by a write that was killed are removed when the run starts. Only
    process 0 writes in a multi-process run; every process reads.

    Args:
        directory: the folder for the backup (created if missing).
        every: write a backup every this many log points (≥ 1).
        keep: keep the backup when the run ends.
    """

    FILE = "backup.npz"

    def __init__(self, directory: str | os.PathLike, every: int = 1, keep: bool = False) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(
                f"BackupAndRestore: directory must be a path, got {type(directory).__name__}"
            )
        keep = check_bool("BackupAndRestore", "keep", keep)
        self.directory = Path(directory)
        self.every = check_int("BackupAndRestore", "every", every, low=1)
        self.keep = keep
        self.restored_step: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def on_train_begin(self, run: Run) -> None:
        self.count, self.restored_step = 0, None
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(
                f"BackupAndRestore: directory {str(self.directory)!r} is a file"
            )
        if parallel.is_main_process():
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob(f".{self.FILE}.*.tmp"):
                stale.unlink(missing_ok=True)  # a write killed before its rename
        if not self.path.is_file():
            return
        ts = run.train_state
        saved = checkpoint.load_meta(self.path) or {}
        differs = [
            f"{name}: backup {saved.get('settings', {}).get(name)!r}, this call {value!r}"
            for name, value in run.settings.items()
            if saved.get("settings", {}).get(name) != value
        ]
        if differs:
            raise ValueError(
                f"BackupAndRestore: the backup {str(self.path)!r} was made by another run ("
                + "; ".join(differs)
                + "); remove it or use another directory"
            )
        try:
            ckpt = checkpoint.load(
                self.path, params=ts.params, opt_state=ts.opt_state, state=ts.state
            )
        except ValueError as error:
            raise ValueError(
                f"BackupAndRestore: the backup {str(self.path)!r} does not fit this model: {error}"
            ) from error
        key_data = np.asarray(jax.random.key_data(ckpt.key))
        if not np.array_equal(key_data, np.asarray(jax.random.key_data(_typed(ts.key)))):
            raise ValueError(
                f"BackupAndRestore: the backup {str(self.path)!r} was made with another key; "
                "remove it or use another directory"
            )
        key = ckpt.key if jnp.issubdtype(ts.key.dtype, jax.dtypes.prng_key) else ts.key
        step = jnp.asarray(ckpt.step, ts.step.dtype if hasattr(ts.step, "dtype") else jnp.int32)
        run.train_state = TrainState(ckpt.params, ckpt.state, ckpt.opt_state, step, key)
        run.history = {k: list(v) for k, v in saved.get("history", {}).items()}
        self.restored_step = ckpt.step

    def on_log(self, run: Run, logs: dict[str, float]) -> None:
        self.count += 1
        if self.count % self.every == 0:
            self._write(run)

    def on_train_end(self, run: Run) -> None:
        if run.stopped == "interrupted":
            self._write(run)
        elif not self.keep and parallel.is_main_process():
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the folder goes only when nothing else is in it
                self.directory.rmdir()

    def _write(self, run: Run) -> None:
        if not parallel.is_main_process():
            return
        ts = run.train_state
        history = {k: np.asarray(v).tolist() for k, v in run.history.items()}
        meta = {"settings": run.settings, "history": history}
        checkpoint.save(self.path, ts.params, ts.opt_state, step=int(ts.step), key=ts.key,
                        meta=meta, state=ts.state)  # fmt: skip


def _typed(key: jax.Array) -> jax.Array:
    return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


class CSVLogger(Callback):
    """Write one CSV row per log point: the epoch (or step) and every logged value.

    The header is the first row's names. The file is flushed after every row, so it can be
    followed while training runs. Only process 0 writes.

    Args:
        path: the CSV file.
        append: append to an existing file (e.g. when resuming) instead of replacing it.
        separator: the field separator.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False, separator: str = ","):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"CSVLogger: path must be a path, got {type(path).__name__}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.append = check_bool("CSVLogger", "append", append)
        self.path, self.separator = Path(path), separator
        self._file: Any = None

    def on_train_begin(self, run: Run) -> None:
        if not parallel.is_main_process():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        had_rows = self.append and self.path.is_file() and self.path.stat().st_size > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._writer, self._header = csv.writer(self._file, delimiter=self.separator), had_rows

    def on_log(self, run: Run, logs: dict[str, float]) -> None:
        if self._file is None:
            return
        if not self._header:
            self._writer.writerow([run.unit, *logs])
            self._header = True
        index = int(run.train_state.step) // run.steps_per_unit
        self._writer.writerow([index, *(repr(float(v)) for v in logs.values())])
        self._file.flush()

    def on_train_end(self, run: Run) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
