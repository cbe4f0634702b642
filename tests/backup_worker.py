"""A training run with `BackupAndRestore`, for tests that kill it and run it again.

    python tests/backup_worker.py BACKUP_DIR OUT.npz [--no-backup]

Trains a dense model with dropout on synthetic data in shuffled mini-batches, printing
``logged E`` after each epoch's log point (after the backup of that epoch is written), then
saves the final train state to ``OUT.npz``.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

import nnrs_jax as nj

EPOCHS = 8


class Announce(nj.callbacks.Callback):
    """Print each log point once the callbacks before it (the backup) are done."""

    def on_log(self, run: nj.callbacks.Run, logs: dict[str, float]) -> None:
        print(f"logged {int(run.train_state.step) // run.steps_per_unit}", flush=True)
        time.sleep(0.05)  # a window for the test's kill between two epochs


def main() -> None:
    directory, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int32) + (x[:, 4] > 0.5).astype(np.int32)
    model = nj.serial(nj.dense(32, 64), nj.relu(), nj.dropout(0.3), nj.dense(64, 3))
    callbacks = [Announce()]
    if "--no-backup" not in sys.argv:
        callbacks.insert(0, nj.callbacks.BackupAndRestore(directory))
    result = nj.fit(model, nj.cross_entropy, nj.adam(1e-3), x, y, key=jax.random.key(7),
                    epochs=EPOCHS, batch_size=50, callbacks=callbacks, progress=False)  # fmt: skip
    ts = result.train_state
    nj.save(out, ts.params, ts.opt_state, step=result.step, key=ts.key, state=ts.state)
    print("done", flush=True)


if __name__ == "__main__":
    main()
