"""Does vmap pay? One model against several trained at once by `nj.fit_many`, same process.

Workloads (MNIST, float32, Adam 1e-3):

* ``minibatch``: the seed's small 784-16-10 network (ReLU), one shuffled epoch of batch 128
  (468 steps, one ``lax.scan``). Target: 8 models cost at most 3× one model per epoch.
* ``fullbatch``: the reference 784-64-32-16-10 network (ELU), full-batch steps on all 60 000
  images. Compute-bound: reported, no target.

Each row is the warm time (compiled code reused, the data already on the device) of one epoch
or of ``--steps`` full-batch steps, the minimum over ``--repeats`` runs, the 1-model and the
n-model runs alternating back to back so that a busy machine slows both alike. The last
column is the ratio to one model.

Usage:
    python benchmarks/bench_vmap.py [--models 8] [--repeats 5] [--steps 10] [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
from harness import cpu_model

import nnrs_jax as nj
from nnrs_jax.train.epoch import epoch_fn, full_step
from nnrs_jax.train.step import step_body
from nnrs_jax.train.sweep import _many_body

BATCH = 128


def small() -> nj.Layer:
    return nj.serial(nj.dense(784, 16), nj.relu(), nj.dense(16, 10))


def reference() -> nj.Layer:
    return nj.serial(
        nj.dense(784, 64, init="he"), nj.elu(1.0),
        nj.dense(64, 32, init="he"), nj.elu(1.0),
        nj.dense(32, 16, init="he"), nj.elu(1.0),
        nj.dense(16, 10, init="he"),
    )  # fmt: skip


def runner(model: nj.Layer, opt: nj.Optimizer, x, y, models: int, steps: int | None):
    """Train once with the public API (it compiles), then return a warm run of the same code."""
    key, mode = jax.random.key(0), ({"steps": 1} if steps else {"epochs": 1, "batch_size": BATCH})
    if models == 1:
        result = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **mode)
        body = step_body(model, nj.cross_entropy, opt, "manual")
    else:
        result = nj.fit_many(model, nj.cross_entropy, opt, x, y, key=key, num_models=models,
                             progress=False, **mode)  # fmt: skip
        body = _many_body(model, nj.cross_entropy, ("static", opt), "manual", models)
    carry = result.train_state
    if steps:
        run_step, inputs = full_step(body), model.prepare(x)

        def run(carry):
            for _ in range(steps):
                carry, _ = run_step(carry, inputs, y)
            return carry

    else:
        run_epoch = epoch_fn(body, BATCH)

        def run(carry):
            return run_epoch(carry, x, y)[0]

    return carry, run


def measure(workload: str, x, y, models: int, repeats: int, steps: int) -> dict[int, float]:
    model = small() if workload == "minibatch" else reference()
    opt = nj.adam(1e-3)
    runs = {n: runner(model, opt, x, y, n, steps if workload == "fullbatch" else None)
            for n in (1, models)}  # fmt: skip
    best = {n: float("inf") for n in runs}
    for _ in range(repeats):
        for n, (carry, run) in runs.items():
            start = time.perf_counter()
            carry = jax.block_until_ready(run(carry))
            best[n] = min(best[n], time.perf_counter() - start)
            runs[n] = (carry, run)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="full-batch steps timed")
    parser.add_argument("--workloads", default="minibatch,fullbatch")
    parser.add_argument("--quick", action="store_true", help="2 000 examples: a smoke test")
    args = parser.parse_args()
    x, y = nj.datasets.mnist("train")
    if args.quick:
        x, y = x[:2000], y[:2000]
    x, y = jax.device_put(x), jax.device_put(y)
    print(f"host: {cpu_model()}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}, {x.shape[0]} examples, min of {args.repeats}")  # fmt: skip
    print("| workload | models | warm time s | × one model |")
    print("|---|---|---|---|")
    for workload in args.workloads.split(","):
        best = measure(workload, x, y, args.models, args.repeats, args.steps)
        what = f"{workload} ({'1 epoch' if workload == 'minibatch' else f'{args.steps} steps'})"
        for n, seconds in best.items():
            print(f"| {what} | {n} | {seconds:.3f} | {seconds / best[1]:.2f} |")


if __name__ == "__main__":
    main()
