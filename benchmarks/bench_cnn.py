"""Benchmark one training epoch of a small MNIST CNN: nnrs_jax against PyTorch and Flax + Optax.

The model, everywhere: conv 3×3 1→32, ReLU, max-pool 2, conv 3×3 32→64, ReLU, max-pool 2,
flatten, dense 1600→128, ReLU, dense 128→10; He-normal weights, zero biases, softmax
cross-entropy, Adam (lr 1e-3, β1 0.9, β2 0.999, eps 1e-8), batch 128 (the last partial batch
dropped), float32, images ``(N, 28, 28, 1)`` in ``[0, 1]``.

Rows, each in a subprocess of its own (its threads and peak memory apart):

    nnrs_jax      the hand-written backward passes (`nnrs_jax.loss_and_grad`), the epoch one
                  jitted ``lax.scan`` over the batches (shuffled and gathered on the device).
    torch         PyTorch eager, NCHW (its native layout): ``randperm``, index, forward, loss,
                  ``backward``, ``torch.optim.Adam``, one thread per available core.
    flax_loop     ``flax.linen`` + ``optax.adam``, a jitted step in a Python loop over batches
                  gathered from a permutation (the Flax examples' pattern).
    flax_scan     the same model and step, the epoch one jitted ``lax.scan`` (as nnrs_jax), so
                  that the comparison measures libraries, not loops.

Each row times the first epoch (compilation included) and ``WARM_EPOCHS`` more; the table gives
the median warm epoch and its ratio to the nnrs_jax row of the same run. With ``--examples N``
the epochs use the first ``N`` training images and the table also extrapolates to 60 000.

Usage:
    python benchmarks/bench_cnn.py [--only nnrs_jax,torch,flax_loop,flax_scan]
        [--examples N] [--cores N] [--repeats N] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from harness import BATCH, WARM_EPOCHS, cpu_model, load_data, save_data, torch_device, torch_epoch

ROWS = ("nnrs_jax", "torch", "flax_loop", "flax_scan")
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
"""Adam, the same in every framework."""
FULL_EPOCH = 60_000
"""The MNIST training set; subset timings are scaled to it."""
EVAL = 16 * BATCH
"""Training images (at most) on which the final accuracy is measured, in batches of ``BATCH``."""

Result = dict[str, float]


def _epochs(run_epoch: Callable[[int], float], n_batches: int) -> Result:
    """Time ``1 + WARM_EPOCHS`` epochs; ``run_epoch(e)`` trains epoch ``e`` and returns its loss."""
    times, losses = [], []
    for e in range(1 + WARM_EPOCHS):
        start = time.perf_counter()
        losses.append(run_epoch(e))
        times.append(time.perf_counter() - start)
    warm = float(np.median(times[1:]))
    return {
        "first_epoch_s": times[0],
        "epoch_s": warm,
        "step_ms": 1000.0 * warm / n_batches,
        "loss": losses[-1],
    }


def _jax_accuracy(
    predict: Callable[..., Any], params: Any, x: Any, y: Any, n_batches: int
) -> float:
    """Accuracy of the JAX ``predict(params, xb)`` on the first `EVAL` (at most) training images."""
    import jax.numpy as jnp

    hits = [
        jnp.sum(jnp.argmax(predict(params, x[i : i + BATCH]), -1) == y[i : i + BATCH])
        for i in range(0, min(EVAL, n_batches * BATCH), BATCH)
    ]
    return float(sum(hits)) / (len(hits) * BATCH)


def _images(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(-1, 28, 28, 1))


def nnrs_jax_setup():
    """The benchmark CNN in nnrs_jax and its optimizer (JAX imported only in its own rows)."""
    import nnrs_jax as nj

    model = nj.serial(
        nj.conv2d(1, 32, 3), nj.relu(), nj.max_pool(2),
        nj.conv2d(32, 64, 3), nj.relu(), nj.max_pool(2),
        nj.flatten(), nj.dense(1600, 128), nj.relu(), nj.dense(128, 10),
    )  # fmt: skip
    return model, nj.adam(LR, B1, B2, EPS)


def worker_nnrs_jax(x: np.ndarray, y: np.ndarray) -> Result:
    import jax
    import jax.numpy as jnp

    import nnrs_jax as nj

    model, opt = nnrs_jax_setup()
    params = model.init(jax.random.key(0))
    opt_state = opt.init(params)
    x, y = jax.block_until_ready((jnp.asarray(_images(x)), jnp.asarray(y)))
    n_batches = x.shape[0] // BATCH

    def epoch(params, opt_state, x, y, key):
        order = jax.random.permutation(key, x.shape[0])[: n_batches * BATCH]

        def step(carry, idx):
            params, opt_state = carry
            loss, grads = nj.loss_and_grad(model, nj.cross_entropy, params, x[idx], y[idx])
            updates, opt_state = opt.update(grads, opt_state, params)
            return (nj.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(n_batches, BATCH)
        )
        return params, opt_state, jnp.mean(losses)

    epoch = jax.jit(epoch, donate_argnums=(0, 1))
    carry = [params, opt_state]

    def run_epoch(e: int) -> float:
        carry[0], carry[1], loss = epoch(carry[0], carry[1], x, y, jax.random.key(e))
        return float(loss)

    result = _epochs(run_epoch, n_batches)
    result["accuracy"] = _jax_accuracy(jax.jit(model.apply), carry[0], x, y, n_batches)
    return result


def worker_torch(x: np.ndarray, y: np.ndarray) -> Result:
    import torch
    from torch import nn

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # He normal, std √(2/fan_in), and zero biases, as nnrs_jax's init="he".
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    device = torch_device()
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS)
    # NCHW, PyTorch's own layout; the flatten order differs from NHWC's, the cost does not.
    xt = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, 28, 28))).to(device)
    yt = torch.from_numpy(y).long().to(device)
    n_batches = xt.shape[0] // BATCH

    def run_epoch(e: int) -> float:
        return torch_epoch(model, opt, xt, yt, BATCH)

    result = _epochs(run_epoch, n_batches)
    with torch.no_grad():
        n = min(EVAL, n_batches * BATCH)
        hits = sum(
            (model(xt[i : i + BATCH]).argmax(-1) == yt[i : i + BATCH]).sum().item()
            for i in range(0, n, BATCH)
        )
    result["accuracy"] = hits / n
    return result


def _flax(x: np.ndarray, y: np.ndarray, scan: bool) -> Result:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    he = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            for width in (32, 64):
                x = nn.relu(nn.Conv(width, (3, 3), padding="VALID", kernel_init=he)(x))
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(128, kernel_init=he)(x))
            return nn.Dense(10, kernel_init=he)(x)

    model, tx = CNN(), optax.adam(LR, b1=B1, b2=B2, eps=EPS)
    x, y = jax.block_until_ready((jnp.asarray(_images(x)), jnp.asarray(y)))
    params = model.init(jax.random.key(0), x[:1])["params"]
    opt_state = tx.init(params)
    n_batches = x.shape[0] // BATCH

    def step(params, opt_state, xb, yb):
        def objective(p):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    carry = [params, opt_state]
    if scan:

        @jax.jit
        def epoch(params, opt_state, key):
            order = jax.random.permutation(key, x.shape[0])[: n_batches * BATCH]

            def body(c, idx):
                p, s, loss = step(*c, x[idx], y[idx])
                return (p, s), loss

            (params, opt_state), losses = jax.lax.scan(
                body, (params, opt_state), order.reshape(n_batches, BATCH)
            )
            return params, opt_state, jnp.mean(losses)

        def run_epoch(e: int) -> float:
            carry[0], carry[1], loss = epoch(carry[0], carry[1], jax.random.key(e))
            return float(loss)

    else:
        train_step = jax.jit(step)

        def run_epoch(e: int) -> float:
            order = jax.random.permutation(jax.random.key(e), x.shape[0])
            losses = []
            for idx in order[: n_batches * BATCH].reshape(n_batches, BATCH):
                carry[0], carry[1], loss = train_step(carry[0], carry[1], x[idx], y[idx])
                losses.append(loss)
            return float(jnp.mean(jnp.stack(losses)))

    result = _epochs(run_epoch, n_batches)
    predict = jax.jit(lambda p, xb: model.apply({"params": p}, xb))
    result["accuracy"] = _jax_accuracy(predict, carry[0], x, y, n_batches)
    return result


def worker_flax_loop(x: np.ndarray, y: np.ndarray) -> Result:
    return _flax(x, y, scan=False)


def worker_flax_scan(x: np.ndarray, y: np.ndarray) -> Result:
    return _flax(x, y, scan=True)


WORKERS = {
    "nnrs_jax": worker_nnrs_jax,
    "torch": worker_torch,
    "flax_loop": worker_flax_loop,
    "flax_scan": worker_flax_scan,
}


def child(*flags: str) -> Result:
    """Run this script with ``flags`` in a fresh interpreter; return the JSON it printed last."""
    command = [sys.executable, str(Path(__file__).resolve()), *flags]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


def prepare(folder: Path, examples: int) -> None:
    from nnrs_jax.datasets import mnist

    x, y = mnist("train")
    save_data(folder, x[:examples], y[:examples])
    print(json.dumps({"examples": min(examples, len(x))}))


def work(row: str, folder: Path, cores: int | None) -> None:
    if cores is not None:
        # Before any framework starts its thread pools, which size themselves to these cores.
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    x, y = load_data(folder)
    result = WORKERS[row](x, y)
    # ru_maxrss counts KiB on Linux and bytes on macOS.
    per_mib = 1 << 20 if sys.platform == "darwin" else 1 << 10
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mib
    print(json.dumps(result))


def table(rows: list[tuple[str, Result]], examples: int) -> str:
    scale = FULL_EPOCH / examples
    headers = ["", "1st epoch s (incl. compile)", "warm epoch s (median)", "ms/step"]
    headers += [f"warm epoch ×{scale:g} s"] if examples != FULL_EPOCH else []
    headers += ["train acc", "peak RSS MiB", f"warm epoch vs {rows[0][0]}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    base = rows[0][1]["epoch_s"]
    for name, r in rows:
        cells = [name, f"{r['first_epoch_s']:.2f}", f"{r['epoch_s']:.2f}", f"{r['step_ms']:.1f}"]
        cells += [f"{r['epoch_s'] * scale:.1f}"] if examples != FULL_EPOCH else []
        cells += [f"{r['accuracy']:.4f}", f"{r['peak_rss_mib']:.0f}", f"{r['epoch_s'] / base:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rows(text: str) -> list[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names or not names <= set(ROWS):
        raise argparse.ArgumentTypeError(f"expected a subset of {','.join(ROWS)}, got {text!r}")
    return [name for name in ROWS if name in names]


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One epoch of an MNIST CNN, four ways.")
    parser.add_argument("--only", type=_rows, default=list(ROWS), help="rows (default: all)")
    parser.add_argument(
        "--examples",
        type=_positive,
        default=FULL_EPOCH,
        help="training images per epoch (default: all 60 000; fewer are extrapolated)",
    )
    parser.add_argument("--repeats", type=_positive, default=1, help="subprocesses per row")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument(
        "--quick", action="store_true", help="1 280 images: checks that every row runs"
    )
    parser.add_argument(
        "--cores",
        type=_positive,
        help="pin every row to this many cores (default: all); 1 compares per-core work, "
        "which a busy machine distorts less than the thread pools' synchronisation",
    )
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        work(args.worker, args.data, args.cores)
        return
    if args.prepare is not None:
        prepare(args.data, args.prepare)
        return
    examples = 1280 if args.quick else args.examples
    with tempfile.TemporaryDirectory(prefix="nnrs_jax_bench_cnn_") as scratch:
        examples = int(child("--prepare", str(examples), "--data", scratch)["examples"])
        runs: dict[str, list[Result]] = {row: [] for row in args.only}
        for repeat in range(args.repeats):
            # Repeats interleave, so that a busy machine's noise spreads over every row alike.
            for row in args.only:
                flags = ["--worker", row, "--data", scratch]
                flags += ["--cores", str(args.cores)] if args.cores is not None else []
                result = child(*flags)
                runs[row].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {row}: {result}", file=sys.stderr)
    medians = {
        row: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for row, rs in runs.items()
    }
    cores = f", {args.cores} core(s)" if args.cores is not None else ""
    print(f"host: {cpu_model()}\n")
    print(
        f"### One epoch of the CNN, batch {BATCH}, {examples} images{cores} ({args.repeats} run(s))"
    )
    print()
    print(table(list(medians.items()), examples))
    if args.json is not None:
        report = {"examples": examples, "repeats": args.repeats, "runs": runs, "median": medians}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
