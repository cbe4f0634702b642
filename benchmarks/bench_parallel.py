"""What data parallelism costs and whether it changes the result: every layout, same run.

Each layout trains the benchmark's reference model (784-64-32-16-10, ELU, He, elastic net
1e-4, Nadam 5e-4, float32, all 60 000 MNIST images) in fresh processes:

* ``one device``: `nj.fit` without a mesh (the baseline);
* ``mesh ×D``: `nj.fit(..., mesh=data_mesh())` over D devices of one process (CPU devices
  from ``JAX_NUM_CPU_DEVICES``, or the GPUs);
* ``P processes ×D``: P processes on this host joined by `jax.distributed` (gloo on CPU), D
  devices each, the same call on every process.

Each layout runs two mini-batch epochs (batch 128) as two `fit` calls, the second resuming the
first, and ten full-batch steps likewise; the second call is timed (compiled code reused, so
the time is the epoch or the steps plus the data placement: the plumbing's cost). The last
columns give the largest difference of any parameter from the one-device run after both
calls. For scale, the row ``one device, autodiff`` changes only the order of the float32
operations (``grads="autodiff"``): Nadam's division by ``√v`` amplifies rounding over
hundreds of steps, so differences of that size are rounding, not a different computation.

Usage:
    python benchmarks/bench_parallel.py [--platform cpu|gpu] [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_model

BATCH, STEPS = 128, 10


def worker(out: str, mode: str, mesh: str, coordinator: str | None, count: int, index: int,
           quick: bool) -> None:  # fmt: skip
    """Train twice (the second call timed) and write the params and the time to ``out``."""
    import jax
    import numpy as np

    import nnrs_jax as nj

    if coordinator is not None:
        nj.parallel.initialize(coordinator, count, index)
    en = nj.elastic_net(1e-4, 1e-4)
    model = nj.serial(
        nj.dense(784, 64, init="he", regularizer=en), nj.elu(1.0),
        nj.dense(64, 32, init="he", regularizer=en), nj.elu(1.0),
        nj.dense(32, 16, init="he", regularizer=en), nj.elu(1.0),
        nj.dense(16, 10, init="he", regularizer=en),
    )  # fmt: skip
    x, y = nj.datasets.mnist("train")
    if quick:
        x, y = x[:4096], y[:4096]
    kwargs = {"mesh": nj.parallel.data_mesh()} if mesh == "mesh" else {}
    kwargs |= {"grads": "autodiff"} if mesh == "autodiff" else {}
    kwargs |= {"steps": STEPS} if mode == "full" else {"epochs": 1, "batch_size": BATCH}
    opt, key = nj.nadam(5e-4), jax.random.key(0)
    first = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False, **kwargs)
    jax.block_until_ready(first.params)
    start = time.perf_counter()
    second = nj.fit(model, nj.cross_entropy, opt, x, y, key=key, progress=False,
                    params=first.params, opt_state=first.opt_state, **kwargs)  # fmt: skip
    jax.block_until_ready(second.params)
    seconds = time.perf_counter() - start
    if nj.parallel.is_main_process():
        leaves = {str(i): np.asarray(a) for i, a in enumerate(jax.tree.leaves(second.params))}
        np.savez(out, seconds=seconds, devices=jax.device_count(), **leaves)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(layout: str, mode: str, processes: int, devices: int, mesh: str, args) -> dict:
    """One layout in fresh processes; its time and params."""
    out = Path(args.tmp) / f"{layout}-{mode}.npz".replace(" ", "_")
    env = dict(os.environ)
    if args.platform == "cpu":
        env |= {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices)}
    coordinator = f"localhost:{free_port()}" if processes > 1 else "-"
    quick = ["--quick"] if args.quick else []
    command = [sys.executable, __file__, *quick, "--worker", str(out), mode, mesh, coordinator,
               str(processes)]  # fmt: skip
    procs = [
        subprocess.Popen([*command, str(i)], env=env, stdout=subprocess.DEVNULL)
        for i in range(processes)
    ]  # gloo prints its connections to stdout
    for proc in procs:
        if proc.wait(timeout=1800) != 0:
            raise SystemExit(f"{layout} ({mode}) failed with exit status {proc.returncode}")
    with __import__("numpy").load(out) as f:
        return {k: f[k] for k in f.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="4 096 examples: a smoke test")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        out, mode, mesh, coordinator, count, index = args.worker
        worker(out, mode, mesh, None if coordinator == "-" else coordinator,
               int(count), int(index), args.quick)  # fmt: skip
        return
    import numpy as np

    if args.platform == "cpu":
        layouts = [("one device", 1, 1, "none"), ("one device, autodiff", 1, 1, "autodiff"),
                   ("mesh ×1", 1, 1, "mesh"), ("mesh ×2", 1, 2, "mesh"), ("mesh ×4", 1, 4, "mesh"),
                   ("2 processes ×1", 2, 1, "mesh"), ("2 processes ×2", 2, 2, "mesh")]  # fmt: skip
    else:
        # Counted in a child: JAX in this process would take the GPUs' memory from the workers.
        count = [sys.executable, "-c", "import jax; print(jax.device_count())"]
        gpus = int(subprocess.run(count, capture_output=True, text=True, check=True).stdout)
        layouts = [("one device", 1, gpus, "none"), ("one device, autodiff", 1, gpus, "autodiff"),
                   (f"mesh ×{gpus}", 1, gpus, "mesh")]  # fmt: skip
    print(f"host: {cpu_model()}; platform {args.platform}; reference MLP, batch {BATCH}")
    print("| layout | devices | warm epoch s | warm 10 full-batch steps s | max param diff: "
          "2 epochs | 20 full-batch steps |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        results = {(name, mode): run(name, mode, p, d, mesh, args)
                   for name, p, d, mesh in layouts for mode in ("epoch", "full")}  # fmt: skip
    for name, *_ in layouts:
        row = [results[(name, mode)] for mode in ("epoch", "full")]
        diffs = [
            max(float(np.max(np.abs(r[k].astype(np.float64) - results[("one device", m)][k])))
                for k in r if k.isdigit())
            for m, r in zip(("epoch", "full"), row, strict=True)
        ]  # fmt: skip
        print(f"| {name} | {int(row[0]['devices'])} | {float(row[0]['seconds']):.2f} | "
              f"{float(row[1]['seconds']):.2f} | {diffs[0]:.1e} | {diffs[1]:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
