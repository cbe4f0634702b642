"""conv2d's policies side by side in the training step, and what `fit`'s measurement chooses.

For each model (the benchmark CNN of ``bench_cnn.py`` at batch 128, and the fast recipe's
network at batch 32), on the first ``--examples`` MNIST training images:

1. **Every policy, fixed** (`nnrs_jax.layers.conv_kernels.POLICIES`): ``nj.fit`` one epoch to
   compile, then the median of ``--epochs`` warm epochs, per step. This is the ranking the
   measurement has to find.
2. **The measurement.** In a fresh process with an empty choice file, one ``nj.fit`` epoch
   with ``NNRS_JAX_AUTOTUNE`` on: the policy chosen, the step times it measured, and the
   whole call's time against the same call with ``NNRS_JAX_AUTOTUNE=off`` (the one-time cost).

Usage:
    python benchmarks/bench_autotune.py [--examples N] [--epochs N] [--only cnn,fast]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_model

BATCH = {"cnn": 128, "fast": 32}


def _model(name: str):
    import nnrs_jax as nj

    if name == "fast":
        return nj.recipes.fast()
    return nj.serial(
        nj.conv2d(1, 32, 3), nj.relu(), nj.max_pool(2),
        nj.conv2d(32, 64, 3), nj.relu(), nj.max_pool(2),
        nj.flatten(), nj.dense(1600, 128), nj.relu(), nj.dense(128, 10),
    )  # fmt: skip


@functools.cache
def _data() -> tuple:
    """The training images, read once per worker: a timed lap holds the `fit` call alone."""
    import nnrs_jax as nj

    return nj.datasets.mnist("train", flatten=False, progress=False)


def _fit(name: str, examples: int, epochs: int = 1):
    import jax

    import nnrs_jax as nj

    x, y = _data()
    return nj.fit(_model(name), nj.cross_entropy, nj.adam(1e-3), x[:examples], y[:examples],
                  key=jax.random.key(0), epochs=epochs, batch_size=BATCH[name],
                  progress=False)  # fmt: skip


def worker_policies(name: str, examples: int, epochs: int) -> dict:
    """Each policy forced: one compiling epoch, then ``epochs`` warm ones (ms per step)."""
    import jax

    from nnrs_jax import autotune
    from nnrs_jax.layers import conv_kernels

    autotune.set_mode("fixed")
    steps = examples // BATCH[name]
    out = {}
    for policy in conv_kernels.POLICIES:
        with autotune.forcing("conv2d", policy):
            _fit(name, examples)
            laps = []
            for _ in range(epochs):
                start = time.perf_counter()
                jax.block_until_ready(_fit(name, examples).params)
                laps.append(time.perf_counter() - start)
        out[policy] = 1000 * statistics.median(laps) / steps
    return out


def worker_measure(name: str, examples: int, epochs: int) -> dict:
    """One ``fit`` epoch, timed whole; with measuring on, the choices it made."""
    import jax

    from nnrs_jax import autotune

    _data()
    start = time.perf_counter()
    jax.block_until_ready(_fit(name, examples).params)
    seconds = time.perf_counter() - start
    made = list(autotune.choices().values())
    times = {k: 1000 * v for k, v in made[0].times.items()} if made else {}
    return {"fit_s": seconds, "policy": sorted({c.policy for c in made}), "times_ms": times}


WORKERS = {"policies": worker_policies, "measure": worker_measure}


def _run(worker: str, name: str, examples: int, epochs: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--only", name,
           "--examples", str(examples), "--epochs", str(epochs)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False, env=env)
    lines = [s for s in done.stdout.splitlines() if s.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{worker} {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", default="cnn,fast")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.only.split(",")
    if args.worker:
        result = WORKERS[args.worker](names[0], args.examples, args.epochs)
        print("RESULT " + json.dumps(result))
        return
    print(f"host: {cpu_model()}\n")
    print("| model | batch | " + " | ".join(f"{p} ms/step" for p in _policies())
          + " | measured choice | fit, measuring | fit, off | one-time cost |")  # fmt: skip
    print("|---" * (len(_policies()) + 6) + "|")
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "NNRS_JAX_AUTOTUNE_CACHE": str(Path(folder) / "c.json"),
                   "NNRS_JAX_AUTOTUNE": "on"}  # fmt: skip
            fixed = _run("policies", name, args.examples, args.epochs, env)
            measured = _run("measure", name, args.examples, args.epochs, env)
            off = _run("measure", name, args.examples, args.epochs,
                       {**env, "NNRS_JAX_AUTOTUNE": "off"})  # fmt: skip
        cells = " | ".join(f"{fixed[p]:.2f}" for p in _policies())
        print(f"| {name} | {BATCH[name]} | {cells} | {'/'.join(measured['policy'])} "
              f"| {measured['fit_s']:.2f} s | {off['fit_s']:.2f} s "
              f"| {measured['fit_s'] - off['fit_s']:.2f} s |")  # fmt: skip
        steps = ", ".join(f"{k} {v:.2f}" for k, v in measured["times_ms"].items())
        print(f"<!-- {name}: the measurement's own step times, ms: {steps} -->")


def _policies() -> tuple[str, ...]:
    from nnrs_jax.layers import conv_kernels

    return tuple(conv_kernels.POLICIES)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
