"""The warm epoch of `nj.fit` as a user calls it (batch 128), for before/after comparisons.

    python benchmarks/bench_fit_epoch.py mlp   # bench.py's seed model, 60 000 training images
    python benchmarks/bench_fit_epoch.py cnn   # bench_cnn.py's CNN, the first 12 800 images

Each `fit(..., epochs=1)` call after the first (which compiles) is timed: data checks,
placement, the compiled epoch and the read-back at its log point. Prints one JSON line with the
median. To compare two versions of the library in one session, run it alternately with
``PYTHONPATH`` pointing at a checkout of each; PyTorch's epoch for the same session comes from
``bench.py --workloads epoch --only torch`` and ``bench_cnn.py --only torch``.
"""

from __future__ import annotations

import json
import sys
import time

import bench_cnn
import bench_nnrs_jax
import jax
import numpy as np
from harness import cpu_model

import nnrs_jax as nj


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "mlp"
    if which == "mlp":
        x, y = nj.datasets.mnist("train")
        (model, opt), epochs = bench_nnrs_jax._reference(), 5
    else:
        x, y = nj.datasets.mnist("train", flatten=False)
        x, y = x[:12800], y[:12800]
        (model, opt), epochs = bench_cnn.nnrs_jax_setup(), 3
    args = (model, nj.cross_entropy, opt, x, y)
    common = {"key": jax.random.key(0), "epochs": 1, "batch_size": 128, "progress": False}
    result = nj.fit(*args, **common)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        result = nj.fit(*args, **common, params=result.params, opt_state=result.opt_state,
                        step=result.step)  # fmt: skip
        jax.block_until_ready(result.params)
        times.append(time.perf_counter() - start)
    print(json.dumps({"host": cpu_model(), "which": which, "epoch_s": float(np.median(times)),
                      "all": times}))  # fmt: skip


if __name__ == "__main__":
    main()
