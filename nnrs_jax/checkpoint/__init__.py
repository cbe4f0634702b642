"""Saving and restoring parameters, optimizer state, step, PRNG key and metadata.

Two formats:

* `save` / `load` (`nnrs_jax.checkpoint.npz`): one ``.npz`` file holding every array of the
  parameter, optimizer-state and model-state pytrees, keyed by its pytree path (``params[0].w``,
  ``opt_state.velocity[2].b``, ``state[1].mean``), plus the step, the PRNG key and a JSON
  metadata string. `load` restores into keyword templates (``load(path, params=...,
  opt_state=..., state=...)``), so NamedTuples and dtypes come back exactly.
* `save_csv_weights` / `load_csv_weights` (`nnrs_jax.checkpoint.csv_weights`): the text format
  of nn-rs, one ``w{i}.csv`` and one ``b{i}.csv`` per dense layer, for exchanging weights with
  the Rust library. (``nj.datasets.load_csv`` is another thing: it reads MNIST images.)

Every file is written atomically (`nnrs_jax.checkpoint.atomic`): to a temporary file in the same
folder, flushed and synced, then renamed over the target, so a crash or an error leaves either
the old file or the new one, never a partial file; on an error the temporary file is removed too.
"""

from nnrs_jax.checkpoint.csv_weights import load_csv_weights, save_csv_weights
from nnrs_jax.checkpoint.npz import Checkpoint, load, load_meta, save

__all__ = ["Checkpoint", "load", "load_csv_weights", "load_meta", "save", "save_csv_weights"]
