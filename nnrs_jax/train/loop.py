"""The host loop: launch compiled chunks, read metrics back at log points, run the callbacks.

Between two log points the host only dispatches compiled code (a step, or a whole epoch); at a
log point it reads the metrics back, checks them, evaluates, and hands a `Run` to each
callback. Ctrl-C is caught here: the first stops the run at the next log point, the second
aborts.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm import tqdm

from nnrs_jax import parallel
from nnrs_jax._validate import check_bool
from nnrs_jax.train.epoch import epoch_fn, fed_epoch_fn, full_step, steps_per_epoch
from nnrs_jax.train.feed import Feed, Layout, OnDevice
from nnrs_jax.train.state import FitResult, TrainState, run_keys
from nnrs_jax.train.step import Body

__all__ = ["Callback", "Run"]

Evaluate = Callable[[Any, Any], dict[str, float]]


@dataclass
class Run:
    """The run as callbacks see it at ``on_train_begin``, each log point and ``on_train_end``.

    Attributes:
        train_state: the `TrainState` at this point. Its arrays are donated to the next
            compiled chunk: copy what you keep (``jax.device_get``). A callback may replace it
            (a backup restored, the best params put back); the loop continues from it.
        history: the rows logged so far, ``{name: [values]}`` (``fit``'s history as lists).
        unit: ``"epoch"`` (mini-batch training) or ``"step"`` (full batch).
        total: how many units this call trains for.
        done: how many units are done (0 at ``on_train_begin``).
        first_step: the train state's step when the call began.
        steps_per_unit: updates per unit (steps per epoch, or 1).
        settings: what identifies the call (unit, total, batch size, rows, first step), for a
            callback that must tell whether a saved run is this one.
        stop_training: set it to ``True`` to stop at the end of this log point.
        stopped: why the run ended early (``"interrupted"``, ``"callback"``), else ``None``.
    """

    train_state: TrainState
    unit: str
    total: int
    first_step: int
    steps_per_unit: int
    settings: dict[str, Any]
    history: dict[str, list] = field(default_factory=dict)
    stop_training: bool = False
    stopped: str | None = None

    @property
    def done(self) -> int:
        return (int(self.train_state.step) - self.first_step) // self.steps_per_unit


class Callback:
    """The host callback protocol: override any of the three hooks; each does nothing here.

    * ``on_train_begin(run)``: before the first step; may replace ``run.train_state`` and
      ``run.history`` (e.g. restore a backup).
    * ``on_log(run, logs)``: at each log point (every epoch; every ``log_every`` full-batch
      steps), after the metrics are read back and the evaluation data evaluated. ``logs``
      holds this point's values (``loss``, the metrics, ``eval_*``); set
      ``run.stop_training = True`` to stop here.
    * ``on_train_end(run)``: after the last log point, also when stopped early by a callback
      or by Ctrl-C; not after an exception.

    Callbacks run on the host, outside the compiled code, in the order given; process 0 and
    the others alike in a multi-process run (a callback that writes files checks
    `nnrs_jax.parallel.is_main_process`).
    """

    def on_train_begin(self, run: Run) -> None:
        """Called once before training."""

    def on_log(self, run: Run, logs: dict[str, float]) -> None:
        """Called at each log point."""

    def on_train_end(self, run: Run) -> None:
        """Called once after training."""


class LoopSettings(NamedTuple):
    """The host loop's settings, shared by `fit` and `fit_many`."""

    steps: int | None
    epochs: int | None
    batch_size: int | None
    drop_last: bool
    log_every: int
    progress: bool
    on_nonfinite: str
    caller: str = "fit"


class _Interrupt:
    """Ctrl-C as a request: the first sets ``requested``, the second raises at once."""

    def __init__(self, caller: str, bar: tqdm) -> None:
        self.caller, self.bar, self.requested, self.previous = caller, bar, False, None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        notice = "interrupted: stopping at the next log point (Ctrl-C again to abort)"
        if self.bar.disable:
            print(f"{self.caller}: {notice}", file=sys.stderr, flush=True)
        else:  # on the bar's own line
            self.bar.set_description_str(notice)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _Log:
    """Reads device metrics back at log points, checks they are finite, keeps the history."""

    def __init__(self, run: Run, settings: LoopSettings) -> None:
        shown = settings.progress and parallel.is_main_process()  # one bar in multi-process runs
        self.bar = tqdm(total=run.total, initial=run.done, unit=run.unit, disable=not shown,
                        dynamic_ncols=True)  # fmt: skip
        self.run, self.on_nonfinite = run, settings.on_nonfinite
        self.pending: list[tuple[int, dict[str, jax.Array]]] = []

    def add(self, index: int, metrics: dict[str, jax.Array]) -> None:
        self.pending.append((index, metrics))

    def flush(self, first_step: Callable[[int], int], per_batch: bool) -> dict[str, float]:
        """Record the pending metrics; return the last point's values."""
        logs: dict[str, float] = {}
        for index, metrics in self.pending:
            host = jax.device_get(metrics)
            bad = ~np.isfinite(np.asarray(host["loss"]))
            if bad.any():
                offset = (
                    int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1))) if per_batch else 0
                )
                message = f"non-finite loss at step {first_step(index) + offset}"
                if self.on_nonfinite == "raise":
                    self.bar.close()
                    raise FloatingPointError(message + "; lower the learning rate or check data")
                if parallel.is_main_process():
                    warnings.warn(message, RuntimeWarning, stacklevel=5)
            reduce = (lambda v: np.mean(v, axis=0)) if per_batch else np.asarray
            logs = {k: reduce(v) for k, v in {"loss": host["loss"], **host}.items()}
            self.record(self.run.unit, index, logs)
        if self.pending:
            shown = {k: f"{np.mean(v):.4f}" for k, v in logs.items()}
            self.bar.set_postfix(shown)
            self.bar.update(len(self.pending))
        self.pending = []
        return logs

    def record(self, name: str, index: int, values: dict[str, Any]) -> None:
        for k, v in {name: index, **values}.items():
            self.run.history.setdefault(k, []).append(v)


def _log_point(
    run: Run, log: _Log, logs: dict, evaluate: Evaluate | None, callbacks: Sequence[Callback]
) -> None:
    ts = run.train_state
    if evaluate is not None:
        values = {f"eval_{k}": v for k, v in evaluate(ts.params, ts.state).items()}
        log.record(f"eval_{run.unit}", int(ts.step) // run.steps_per_unit, values)
        logs = {**logs, **values}
    for callback in callbacks:
        callback.on_log(run, {k: float(np.mean(v)) for k, v in logs.items()})


def run_loop(
    body: Body,
    ts: TrainState,
    data: OnDevice | Feed,
    settings: LoopSettings,
    evaluate: Evaluate | None = None,
    layout: Layout | None = None,
    hyper: Any = (),
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """The host loop shared by `fit` and `fit_many`."""
    layout = Layout() if layout is None else layout
    caller, batch_size = settings.caller, settings.batch_size
    if batch_size is None:
        unit, total, per_unit = "step", settings.steps, 1
    else:
        rows = data.rows
        if batch_size > rows:
            raise ValueError(f"{caller}: batch_size {batch_size} is larger than the {rows} "
                             "examples")  # fmt: skip
        unit, total = "epoch", settings.epochs
        per_unit = steps_per_epoch(rows, batch_size, settings.drop_last)
    start = int(ts.step)
    if start % per_unit:
        raise ValueError(f"{caller}: step {start} is not a whole number of epochs of {per_unit} "
                         "steps")  # fmt: skip
    run_settings = {"unit": unit, "total": total, "batch_size": batch_size,
                    "rows": int(data.rows), "first_step": start}  # fmt: skip
    run = Run(ts, unit, total, start, per_unit, run_settings)
    for callback in callbacks:
        callback.on_train_begin(run)
    out = layout.out_shardings()
    paced = parallel.paced(layout.mesh)
    log = _Log(run, settings)
    ts = layout.place(run.train_state)
    with _Interrupt(caller, log.bar) as interrupt:
        if unit == "step":
            run_step = full_step(body, out)
            while run.done < total:
                i = int(ts.step) - start  # one read per log point: the host loop stays ahead
                for j in range(i, min(total, i + settings.log_every - i % settings.log_every)):
                    ts, metrics = run_step(ts, data.x, data.y, hyper)
                    log.add(start + j, metrics)
                    if paced and (j + 1) % parallel.MAX_AHEAD == 0:
                        jax.block_until_ready(ts.step)
                logs = log.flush(lambda index: index, per_batch=False)
                ts = _after_log(run, ts, log, logs, evaluate, callbacks, layout)
                if _stopping(run, interrupt):
                    break
        else:
            fed = isinstance(data, Feed)
            if fed:
                rest = data.rows % batch_size if per_unit > data.rows // batch_size else 0
                data.check(batch_size, rest)
                run_epoch = fed_epoch_fn(body, out)
                tail_step = full_step(body, out) if rest else None
            else:
                run_epoch = epoch_fn(body, batch_size, settings.drop_last, out)
            while run.done < total:
                e = int(ts.step) // per_unit
                if fed:
                    perm_key = jax.random.fold_in(run_keys(ts.key)[1], e)
                    ts, metrics = run_epoch(ts, *data.epoch(perm_key, batch_size))
                    if tail_step is not None:
                        ts, last = tail_step(ts, *data.tail(perm_key, batch_size))
                        metrics = jax.tree.map(
                            lambda a, b: np.concatenate([a, np.asarray(b)[None]]), metrics, last
                        )
                else:
                    ts, metrics = run_epoch(ts, data.x, data.y, hyper)
                log.add(e, metrics)
                logs = log.flush(lambda index: index * per_unit, per_batch=True)
                ts = _after_log(run, ts, log, logs, evaluate, callbacks, layout)
                if _stopping(run, interrupt):
                    break
    log.bar.close()
    for callback in callbacks:
        callback.on_train_end(run)
    history = {k: np.asarray(v) for k, v in run.history.items()}
    return FitResult(run.train_state, history, run.stopped)


def _after_log(run, ts, log, logs, evaluate, callbacks, layout) -> TrainState:
    run.train_state = ts
    _log_point(run, log, logs, evaluate, callbacks)
    if run.train_state is not ts:  # a callback put another state in place
        ts = layout.place(run.train_state)
        run.train_state = ts
    return ts


def _stopping(run: Run, interrupt: _Interrupt) -> bool:
    if interrupt.requested:
        run.stopped = "interrupted"
    elif run.stop_training:
        run.stopped = "callback"
    return run.stopped is not None


def check_count(caller: str, name: str, value: Any, *, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{caller}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def loop_settings(
    caller: str,
    steps: Any,
    epochs: Any,
    batch_size: Any,
    drop_last: Any,
    log_every: Any,
    progress: Any,
    on_nonfinite: Any,
) -> LoopSettings:
    """The loop's settings, each checked, with errors that name ``caller``."""
    if batch_size is None:
        if steps is None or epochs is not None:
            raise ValueError(
                f"{caller}: full-batch training (batch_size=None) needs steps=N and no epochs"
            )
        check_count(caller, "steps", steps, minimum=0)
    else:
        if epochs is None or steps is not None:
            raise ValueError(
                f"{caller}: mini-batch training (batch_size=B) needs epochs=E and no steps"
            )
        check_count(caller, "epochs", epochs, minimum=0)
        check_count(caller, "batch_size", batch_size, minimum=1)
    check_count(caller, "log_every", log_every, minimum=1)
    if on_nonfinite not in ("raise", "warn"):
        raise ValueError(f"{caller}: on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
    drop_last = check_bool(caller, "drop_last", drop_last)
    progress = check_bool(caller, "progress", progress)
    return LoopSettings(steps, epochs, batch_size, drop_last, log_every, progress, on_nonfinite,
                        caller)  # fmt: skip
