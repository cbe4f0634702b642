"""Peak memory of the seed run as a user runs it: ``nj.datasets.mnist``, then ``nj.fit``.

Each repeat is a fresh subprocess that loads the training set with `nnrs_jax.datasets.mnist`
and trains the seed's model (784-64-32-16-10, ELU, He, elastic net 1e-4, Nadam 5e-4) for 151
full-batch steps with `nnrs_jax.fit`, then reports its peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``) and the seconds of ``fit``. The target: at most 800 MiB.

Usage:
    python benchmarks/bench_memory.py [--repeats 3] [--steps 151]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from harness import cpu_model

TARGET_MIB = 800


def worker(steps: int) -> dict[str, float]:
    import jax
    from bench_nnrs_jax import _reference  # the seed's model and Nadam, as in bench.py

    import nnrs_jax as nj

    x, y = nj.datasets.mnist("train")
    model, optimizer = _reference()
    start = time.perf_counter()
    result = nj.fit(model, nj.cross_entropy, optimizer, x, y, key=jax.random.key(0),
                    steps=steps, progress=False)  # fmt: skip
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_rss_mib": peak, "fit_s": seconds, "loss": float(result.history["loss"][-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=151)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps)))
        return
    print(f"host: {cpu_model()}")
    runs = []
    for _ in range(args.repeats):
        done = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\nseed run as a user runs it ({args.steps} full-batch steps), one fresh process each")
    print("| run | peak RSS MiB | fit s | final loss |")
    print("|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {r['peak_rss_mib']:.0f} | {r['fit_s']:.2f} | {r['loss']:.4f} |")
    worst = max(r["peak_rss_mib"] for r in runs)
    verdict = "met" if worst <= TARGET_MIB else "missed"
    print(f"\nhighest peak {worst:.0f} MiB; target <= {TARGET_MIB} MiB: {verdict}")


if __name__ == "__main__":
    main()
