"""Benchmark the sequence layers: an LSTM epoch and an attention block, nnrs_jax against PyTorch.

Workloads, each framework in a subprocess of its own (its threads apart), float32:

    lstm        one training epoch of the LSTM recipe's model on MNIST rows: LSTM 28→128 over
                28 steps, its last hidden state into dense 128→10, softmax cross-entropy, Adam
                (lr 1e-3), batch 128, the partial last batch dropped. nnrs_jax: the
                hand-written backward through time (`nnrs_jax.loss_and_grad`), the epoch one
                jitted ``lax.scan`` over the batches. PyTorch: ``nn.LSTM(batch_first=True)``
                and ``nn.Linear``, an eager loop (``randperm``, index, forward, ``backward``,
                ``torch.optim.Adam``). The first epoch (compilation included) and the median of
                ``WARM_EPOCHS`` more are timed; with ``--examples N`` on the first ``N`` rows,
                scaled to 60 000.
    attention   forward and backward of one attention block ``y = x + MHA(layer_norm(x))``
                (pre-norm, as the transformer recipe's), for each shape in `SHAPES`: nnrs_jax
                ``jit`` of `nnrs_jax.forward` then `nnrs_jax.backward` (the gradient of every
                parameter and of ``x`` for a given ``dy``); PyTorch ``nn.LayerNorm`` and
                ``nn.MultiheadAttention(batch_first=True)``, ``need_weights=False``,
                ``y.backward(dy)``. The median of `REPEATS` calls, after warm-up.

The tables give each row's time and its ratio to PyTorch's in the same run (the targets: at
most 1.0×), and the CPU model the run was measured on.

Usage:
    python benchmarks/bench_sequences.py [--workloads lstm,attention] [--examples N] [--quick]
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
from harness import BATCH, WARM_EPOCHS, cpu_model, load_data, save_data, torch_epoch

HIDDEN = 128
"""Hidden units of the LSTM, as in ``nj.recipes.lstm``."""
LR = 1e-3
SHAPES = ((128, 16, 64, 4), (32, 64, 128, 8), (16, 256, 256, 8))
"""Attention shapes ``(batch, time, dim, heads)``: the transformer recipe's block, and two
longer sequences."""
REPEATS = 20
FULL_EPOCH = 60_000


def _epochs(run_epoch: Callable[[int], float], n_batches: int, scale: float) -> dict[str, float]:
    times, losses = [], []
    for e in range(1 + WARM_EPOCHS):
        start = time.perf_counter()
        losses.append(run_epoch(e))
        times.append(time.perf_counter() - start)
    return {
        "first_epoch_s": times[0] * scale,
        "epoch_s": float(np.median(times[1:])) * scale,
        "loss": losses[-1],
    }


def lstm_nnrs_jax(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    import nnrs_jax as nj

    model = nj.serial(nj.lstm(28, HIDDEN), nj.dense(HIDDEN, 10))
    opt = nj.adam(LR)
    params = model.init(jax.random.key(0))
    x, y = jax.block_until_ready((jnp.asarray(x.reshape(-1, 28, 28)), jnp.asarray(y)))
    n_batches = x.shape[0] // BATCH

    def epoch(params, opt_state, key):
        order = jax.random.permutation(key, x.shape[0])[: n_batches * BATCH]

        def step(carry, idx):
            params, opt_state = carry
            loss, grads = nj.loss_and_grad(
                model, nj.cross_entropy, params, x[idx], y[idx], train=True
            )  # as nj.fit: the training mode
            updates, opt_state = opt.update(grads, opt_state, params)
            return (nj.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(n_batches, BATCH)
        )
        return params, opt_state, jnp.mean(losses)

    epoch = jax.jit(epoch, donate_argnums=(0, 1))
    carry = [params, opt.init(params)]

    def run_epoch(e: int) -> float:
        carry[0], carry[1], loss = epoch(carry[0], carry[1], jax.random.key(e))
        return float(loss)

    return _epochs(run_epoch, n_batches, FULL_EPOCH / (n_batches * BATCH))


def lstm_torch(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import torch
    from torch import nn

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(28, HIDDEN, batch_first=True)
            self.out = nn.Linear(HIDDEN, 10)

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            seq, _ = self.lstm(rows)
            return self.out(seq[:, -1])

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 28, 28)))
    yt = torch.from_numpy(y).long()
    n_batches = xt.shape[0] // BATCH

    def run_epoch(e: int) -> float:
        return torch_epoch(model, opt, xt, yt, BATCH)

    return _epochs(run_epoch, n_batches, FULL_EPOCH / (n_batches * BATCH))


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        call()
    laps = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        laps.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(laps)


def _forward_backward(block, params, x, dy):
    """``y`` and ``(grads, dx)`` of a layer, as a training step needs them."""
    import nnrs_jax as nj

    y = nj.forward(block, params, x)[0]
    return y, nj.backward(block, params, x, dy)


def attention_nnrs_jax(repeats: int) -> dict[str, float]:
    import jax

    import nnrs_jax as nj

    out = {}
    for b, t, d, h in SHAPES:
        block = nj.residual(nj.serial(nj.layer_norm(d), nj.multi_head_attention(d, h)))
        params = block.init(jax.random.key(0))
        kx, ky = jax.random.split(jax.random.key(1))
        x = jax.random.normal(kx, (b, t, d))
        dy = jax.random.normal(ky, (b, t, d))

        step = jax.jit(functools.partial(_forward_backward, block))
        out[f"{b}x{t}x{d}/{h}"] = _median_ms(
            lambda f=step, p=params, x=x, dy=dy: jax.block_until_ready(f(p, x, dy)), repeats
        )
    return out


def attention_torch(repeats: int) -> dict[str, float]:
    import torch
    from torch import nn

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    out = {}
    for b, t, d, h in SHAPES:
        norm, mha = nn.LayerNorm(d), nn.MultiheadAttention(d, h, batch_first=True)
        x = torch.randn(b, t, d, requires_grad=True)
        dy = torch.randn(b, t, d)

        def forward_backward(norm=norm, mha=mha, x=x, dy=dy) -> None:
            for p in (*norm.parameters(), *mha.parameters(), x):
                p.grad = None
            z = norm(x)
            y = x + mha(z, z, z, need_weights=False)[0]
            y.backward(dy)

        out[f"{b}x{t}x{d}/{h}"] = _median_ms(forward_backward, repeats)
    return out


WORKERS = {
    ("lstm", "nnrs_jax"): lstm_nnrs_jax,
    ("lstm", "torch"): lstm_torch,
    ("attention", "nnrs_jax"): attention_nnrs_jax,
    ("attention", "torch"): attention_torch,
}


def _worker(args: argparse.Namespace) -> None:
    workload, framework = args.worker.split(":")
    if workload == "lstm":
        x, y = load_data(Path(args.folder))
        result = WORKERS[workload, framework](x, y)
    else:
        result = WORKERS[workload, framework](args.repeats)
    print("RESULT " + json.dumps(result))


def _spawn(args: argparse.Namespace, workload: str, framework: str, folder: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", f"{workload}:{framework}", "--folder", folder,
           "--repeats", str(args.repeats)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{workload}:{framework} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="lstm,attention")
    parser.add_argument("--examples", type=int, default=12_800,
                        help="rows per LSTM epoch (scaled to 60 000 in the table)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.examples, args.repeats = 2 * BATCH, 2
    workloads = args.workloads.split(",")
    print(f"host: {cpu_model()}\n")
    with tempfile.TemporaryDirectory() as folder:
        if "lstm" in workloads:
            import nnrs_jax as nj

            x, y = nj.datasets.mnist("train", progress=False)
            save_data(Path(folder), x[: args.examples], y[: args.examples])
            rows = {fw: _spawn(args, "lstm", fw, folder) for fw in ("nnrs_jax", "torch")}
            print(f"LSTM epoch (28 steps, hidden {HIDDEN}, batch {BATCH}), "
                  f"{args.examples} rows scaled to 60 000")  # fmt: skip
            print("| framework | first epoch s | warm epoch s | ratio to torch |")
            print("|---|---|---|---|")
            for fw, r in rows.items():
                ratio = r["epoch_s"] / rows["torch"]["epoch_s"]
                print(f"| {fw} | {r['first_epoch_s']:.2f} | {r['epoch_s']:.2f} | {ratio:.2f}x |")
            print()
        if "attention" in workloads:
            rows = {fw: _spawn(args, "attention", fw, folder) for fw in ("nnrs_jax", "torch")}
            print("attention block x + MHA(layer_norm(x)), forward and backward, median ms")
            print("| batch x time x dim / heads | nnrs_jax ms | torch ms | ratio |")
            print("|---|---|---|---|")
            for shape, ms in rows["nnrs_jax"].items():
                theirs = rows["torch"][shape]
                print(f"| {shape} | {ms:.2f} | {theirs:.2f} | {ms / theirs:.2f}x |")


if __name__ == "__main__":
    main()
