"""Training: the step, compiled epochs, the host loop with callbacks, `fit` and `fit_many`.

* `step` — the one pure training step with its in-graph hooks; `make_train_step`.
* `state` — `TrainState` (the loop's carry: everything a run needs to continue), `FitResult`.
* `epoch` — compiled chunks: one step, or an epoch in ``lax.scan``; `make_epoch`.
* `feed` — placing the data on one device or over a mesh.
* `loop` — the host loop: log points, callbacks (`Callback`, `Run`), Ctrl-C.
* `callbacks` — `EarlyStopping`, `BackupAndRestore`, `CSVLogger`.
* `fit` — the keyword front door; `sweep` — `fit_many`.
"""

from nnrs_jax.train import callbacks
from nnrs_jax.train.epoch import make_epoch
from nnrs_jax.train.fit import fit
from nnrs_jax.train.state import FitResult, TrainState, run_keys
from nnrs_jax.train.step import accuracy, make_train_step
from nnrs_jax.train.sweep import fit_many

__all__ = [
    "FitResult",
    "TrainState",
    "accuracy",
    "callbacks",
    "fit",
    "fit_many",
    "make_epoch",
    "make_train_step",
    "run_keys",
]
