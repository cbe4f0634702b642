"""What every benchmark worker shares: the reference model's hyperparameters, run sizes, data.

Kept free of any framework import, so that a worker process loads only the framework it
measures.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "B1",
    "B2",
    "BATCH",
    "EPS",
    "FULL",
    "L1",
    "L2",
    "LR",
    "QUICK",
    "SIZES",
    "VMAP_MODELS",
    "WARM_EPOCHS",
    "Settings",
    "cpu_model",
    "load_data",
    "median_ms",
    "save_data",
    "torch_epoch",
]

SIZES = (784, 64, 32, 16, 10)
"""Layer widths of the reference MLP; ELU(1.0) follows every hidden layer."""
L1, L2 = 1e-4, 1e-4
"""Elastic-net penalty on the weights (never the biases): ``L1·Σ|w| + L2·Σw²``."""
LR, B1, B2, EPS = 5e-4, 0.9, 0.999, 1e-7
"""Nadam hyperparameters."""
BATCH = 128
"""Mini-batch size of the ``epoch`` workload; the partial last batch is dropped."""
VMAP_MODELS = 8
"""How many models the ``vmap`` workload trains at once."""


class Settings(NamedTuple):
    """Run sizes: `FULL` for real measurements, `QUICK` to check the script end to end."""

    examples: int | None
    """Training examples used (``None``: all 60 000)."""
    full_steps: int
    """Full-batch steps of the ``full`` workload (the seed run took 151)."""
    steady_steps: int
    """Extra steps, each timed alone, whose median is the steady per-step time."""
    vmap_steps: int
    """Full-batch steps of the ``vmap`` workload."""


WARM_EPOCHS = 3
"""Epochs timed after the first (compiled or warmed-up) one; the tables give their median."""

FULL = Settings(examples=None, full_steps=151, steady_steps=20, vmap_steps=20)
QUICK = Settings(examples=2048, full_steps=3, steady_steps=3, vmap_steps=3)


def save_data(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write the training set once, for every worker to read the same arrays."""
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)


def load_data(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 ``(N, 784)`` in ``[0, 1]`` and ``y`` int32 ``(N,)``, as `save_data` wrote.

    Read into 64-byte aligned arrays, as ``nj.datasets.mnist`` returns them: JAX's CPU client
    then takes them in place (``jax.device_put``), as PyTorch's ``torch.from_numpy`` does. The
    alignment is written here, not taken from ``nnrs_jax.datasets.idx``: the PyTorch workers
    read their data with this function and never import JAX.
    """
    arrays = []
    for name in ("x.npy", "y.npy"):
        stored = np.load(folder / name, mmap_mode="r")
        raw = np.empty(stored.nbytes + 64, np.uint8)
        start = -raw.ctypes.data % 64
        array = raw[start : start + stored.nbytes].view(stored.dtype).reshape(stored.shape)
        array[...] = stored
        arrays.append(array)
    return arrays[0], arrays[1]


def median_ms(laps: Sequence[float]) -> float:
    """The median of lap times in seconds, in milliseconds: robust to a busy machine's spikes."""
    return 1000.0 * statistics.median(laps)


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")
"""The vector extensions a benchmark's host line names when the CPU has them."""


def cpu_model() -> str:
    """The host in one line: the CPU's model name, its core count and its vector extensions.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere ``platform.processor()``. Every benchmark
    prints it first, since figures from one host say nothing about another.
    """
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fallback = platform.processor() or "unknown"
    name = next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith(("model name", "Model"))), fallback)  # fmt: skip
    flags = next((line.split(":", 1)[1].split() for line in lines
                  if line.startswith(("flags", "Features"))), [])  # fmt: skip
    isa = [f for f in ISA_FLAGS if f in flags]
    return f"{name} ({os.cpu_count()} cores; {', '.join(isa) or 'no listed vector extension'})"


def torch_device():
    """PyTorch's device in the benchmarks: its GPU when it sees one (a CUDA build on a machine
    with a GPU, where JAX's default device is the GPU too), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_sync(device) -> None:
    """Wait for ``device``'s queued work, so that a host clock read after it is honest."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_epoch(model, opt, x, y, batch: int) -> float:
    """One shuffled PyTorch epoch as its users write it: ``randperm``, index, forward,
    cross-entropy, ``backward``, ``opt.step()``; the partial last batch dropped. Returns the
    mean loss (read back, so the device's work is done). PyTorch is imported here, so that other
    workers never load it."""
    import torch
    from torch.nn import functional as F

    order = torch.randperm(x.shape[0], device=x.device)
    losses = []
    for i in range(x.shape[0] // batch):
        idx = order[i * batch : (i + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses).mean().item()
