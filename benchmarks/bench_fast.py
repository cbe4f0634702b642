"""The fast recipe against its PyTorch twin: the same net, schedule and epochs, timed in one run.

Both train ``nj.recipes.fast()``'s network on the 60 000 MNIST training images with the
settings of ``nj.recipes.FAST`` and score it on the 10 000 test images:

    nnrs_jax_first  ``nj.fit`` exactly as ``nnrs-jax train --model fast`` calls it, in a fresh
               process with an empty compilation cache and an empty choice file: the first
               run on a host, which also measures ``conv2d``'s implementations once
               (`nnrs_jax.autotune`; the time includes tracing, compiling and measuring).
    nnrs_jax   the same, a fresh process with an empty compilation cache, reading the choices
               the first run stored: every later run on the host.
    torch      the same layers in PyTorch (NCHW, its native layout; on the GPU when its CUDA
               build sees one), He-normal weights and
               zero biases, ``torch.optim.Adam`` with the same learning rate, warmed up over
               the first epoch and cosine-decayed (``LambdaLR``, stepped every batch), every
               batch shifted at random by up to one pixel the same way (zero fill, one offset
               per image, by indexing a padded batch), an eager loop over ``randperm``
               batches, one thread per available core.

Each framework runs in a subprocess of its own. The table gives the training time (data
already in memory, evaluation excluded), the test accuracy and the ratio to PyTorch's time
(the target: at most 0.8×).

Usage:
    python benchmarks/bench_fast.py [--repeats N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import cpu_model


def _settings() -> dict:
    """The recipe's network widths and training settings, read from nnrs_jax in the parent."""
    import nnrs_jax as nj

    r = nj.recipes.FAST
    if r.schedule != "warmup_cosine" or r.augment != nj.augment.random_shift(1):
        sys.exit("bench_fast.py mirrors warmup_cosine and random_shift(1): update its twin")
    return {"lr": r.lr, "epochs": r.epochs, "batch_size": r.batch_size,
            "widths": list(nj.recipes.FAST_WIDTHS)}  # fmt: skip


def worker_nnrs_jax(settings: dict, seed: int, cache: str) -> dict:
    """Run in a process whose ``NNRS_JAX_AUTOTUNE_CACHE`` names this benchmark's choice file."""
    import jax

    import nnrs_jax as nj

    nj.enable_compilation_cache(cache)  # an empty folder: a cold first run
    x, y = nj.datasets.mnist("train", flatten=False, progress=False)
    xt, yt = nj.datasets.mnist("test", flatten=False, progress=False)
    model, recipe = nj.recipes.fast(), nj.recipes.FAST
    opt_spec = {"optimizer": recipe.optimizer, "lr": recipe.lr, "schedule": recipe.schedule}
    per_epoch = x.shape[0] // recipe.batch_size
    optimizer = nj.specs.build_optimizer(opt_spec, recipe.epochs * per_epoch, per_epoch)
    start = time.perf_counter()
    result = nj.fit(model, nj.cross_entropy, optimizer, x, y, key=jax.random.key(seed),
                    epochs=recipe.epochs, batch_size=recipe.batch_size, augment=recipe.augment,
                    progress=False)  # fmt: skip
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    accuracy = nj.evaluate(model, result.params, xt, yt, state=result.state).accuracy
    made = sorted({f"{c.policy} ({c.source})" for c in nj.autotune.choices().values()})
    return {"train_s": seconds, "accuracy": accuracy, "choices": made}


def worker_torch(settings: dict, seed: int, cache: str) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional as F

    import nnrs_jax as nj  # only to read MNIST the same way

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = nj.datasets.mnist("train", flatten=False, progress=False)
    xt, yt = nj.datasets.mnist("test", flatten=False, progress=False)
    c1, c2, hidden = settings["widths"]
    model = nn.Sequential(
        nn.Conv2d(1, c1, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(25 * c2, hidden), nn.ReLU(), nn.Linear(hidden, 10),
    )  # fmt: skip
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    model = model.to(device)
    xs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    ys = torch.from_numpy(y).long().to(device)
    batch, epochs = settings["batch_size"], settings["epochs"]
    per_epoch = xs.shape[0] // batch
    steps = epochs * per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    # The factor of the t-th update (t from 1), as nj.schedules.warmup_cosine_decay with a
    # warm-up of one epoch W: t/W, then (1 + cos(π·(t − W)/(T − W)))/2.
    warm = per_epoch

    def factor(t: int) -> float:
        t += 1
        if t < warm:
            return t / warm
        return 0.5 * (1 + math.cos(math.pi * min(t - warm, steps - warm) / (steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rows = torch.arange(28, device=device)

    def shift(images: torch.Tensor) -> torch.Tensor:
        """Each image moved by (dy, dx) in {-1, 0, 1}², zero-filled: random_shift(1)."""
        n = images.shape[0]
        padded = F.pad(images[:, 0], (1, 1, 1, 1))  # (n, 30, 30)
        dy, dx = torch.randint(-1, 2, (2, n), device=device)
        r = (rows[None, :] + 1 - dy[:, None])[:, :, None]  # y[i] = x[i − dy]
        c = (rows[None, :] + 1 - dx[:, None])[:, None, :]
        return padded[torch.arange(n, device=device)[:, None, None], r, c][:, None]

    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(xs.shape[0], device=device)
        for i in range(per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(shift(xs[idx])), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        xtt = torch.from_numpy(np.ascontiguousarray(xt.transpose(0, 3, 1, 2))).to(device)
        hits = sum((model(xtt[i : i + 1000]).argmax(-1).cpu().numpy() == yt[i : i + 1000]).sum()
                   for i in range(0, len(yt), 1000))  # fmt: skip
    return {"train_s": seconds, "accuracy": float(hits) / len(yt), "device": str(device)}


WORKERS = {"nnrs_jax_first": worker_nnrs_jax, "nnrs_jax": worker_nnrs_jax, "torch": worker_torch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.settings), args.seed, args.cache)
        print("RESULT " + json.dumps(result))
        return
    settings = _settings()
    print(f"host: {cpu_model()}")
    print(f"recipe: widths {settings['widths']}, Adam {settings['lr']:g} warmed up over one "
          "epoch and cosine-decayed, "
          f"{settings['epochs']} epochs of {settings['batch_size']}\n")  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in WORKERS}
    for _ in range(args.repeats):
        choices = tempfile.TemporaryDirectory()
        env = {**os.environ, "NNRS_JAX_AUTOTUNE_CACHE": str(Path(choices.name) / "choices.json")}
        for name in WORKERS:
            with tempfile.TemporaryDirectory() as cache:
                cmd = [sys.executable, __file__, "--worker", name, "--seed", str(args.seed),
                       "--settings", json.dumps(settings), "--cache", cache]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                      check=False, env=env)  # fmt: skip
            lines = [s for s in done.stdout.splitlines() if s.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(lines[-1][len("RESULT ") :]))
        choices.cleanup()
    torch_s = statistics.median(r["train_s"] for r in runs["torch"])
    print("| framework | training s (median) | runs | test % | ratio to torch | conv2d choices |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        seconds = statistics.median(r["train_s"] for r in rs)
        laps = ", ".join(f"{r['train_s']:.1f}" for r in rs)
        accuracy = ", ".join(f"{100 * r['accuracy']:.2f}" for r in rs)
        sources = "; ".join("/".join(r.get("choices", [])) or "—" for r in rs)
        print(f"| {name} | {seconds:.1f} | {laps} | {accuracy} | {seconds / torch_s:.2f}x "
              f"| {sources} |")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
