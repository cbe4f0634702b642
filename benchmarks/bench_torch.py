"""The PyTorch side of the benchmark: an eager training loop as a PyTorch user writes it, on
PyTorch's GPU when it sees one (``harness.torch_device``), else on the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import torch
from harness import (
    B1,
    B2,
    BATCH,
    EPS,
    L1,
    L2,
    LR,
    WARM_EPOCHS,
    Settings,
    median_ms,
    torch_device,
    torch_sync,
)
from torch import nn
from torch.nn import functional as F

__all__ = ["epoch", "first_step", "full"]


def _nadam(params: list[torch.Tensor]) -> Callable[[], None]:
    """Nadam in the constant-β1 form of ``nnrs_jax.nadam``, written by hand.

    ``torch.optim.NAdam`` follows Dozat's schedule ``μ_t = β1·(1 − ½·0.96^(ψ·t))``, and no
    ``momentum_decay`` ψ keeps ``μ_t = β1`` (ψ = 0 gives ``β1/2``), so it cannot match. This is
    ``p ← p − lr·(β1·m̂ + (1 − β1)·g/(1 − β1ᵗ))/(√ŝ + eps)`` with the multi-tensor (foreach)
    kernels ``torch.optim`` itself uses.
    """
    m = [torch.zeros_like(p) for p in params]
    s = [torch.zeros_like(p) for p in params]
    t = 0

    @torch.no_grad()
    def update() -> None:
        nonlocal t
        t += 1
        c1, c2 = 1.0 - B1**t, 1.0 - B2**t
        grads = [p.grad for p in params]
        torch._foreach_lerp_(m, grads, 1.0 - B1)
        torch._foreach_mul_(s, B2)
        torch._foreach_addcmul_(s, grads, grads, value=1.0 - B2)
        lookahead = torch._foreach_mul(m, B1 / c1)
        torch._foreach_add_(lookahead, grads, alpha=(1.0 - B1) / c1)
        denominator = torch._foreach_div(s, c2)
        torch._foreach_sqrt_(denominator)
        torch._foreach_add_(denominator, EPS)
        torch._foreach_addcdiv_(params, lookahead, denominator, value=-LR)

    return update


class _Trainer:
    """The reference MLP, its elastic-net penalty, and one training step."""

    def __init__(self) -> None:
        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        self.device = torch_device()
        self.model = nn.Sequential(
            nn.Linear(784, 64),
            nn.ELU(1.0),
            nn.Linear(64, 32),
            nn.ELU(1.0),
            nn.Linear(32, 16),
            nn.ELU(1.0),
            nn.Linear(16, 10),
        )
        self.weights = [m.weight for m in self.model if isinstance(m, nn.Linear)]
        for m in self.model:
            if isinstance(m, nn.Linear):
                # He normal, std √(2/fan_in), and zero biases, as nnrs_jax's dense(init="he").
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.model.to(self.device)
        self.update = _nadam(list(self.model.parameters()))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        penalty = sum(L1 * w.abs().sum() + L2 * w.square().sum() for w in self.weights)
        loss = F.cross_entropy(self.model(x), y) + penalty
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        self.update()
        return loss.detach()

    def steady_ms(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
        laps = []
        for _ in range(steps):
            lap = time.perf_counter()
            self.step(x, y)
            torch_sync(self.device)
            laps.append(time.perf_counter() - lap)
        return median_ms(laps)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return (self.model(x).argmax(dim=-1) == y).float().mean().item()


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # cross_entropy wants int64 class indices.
    device = torch_device()
    return torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)


def full(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """``full_steps`` full-batch steps, reading the loss back every 10 steps as ``fit`` does."""
    trainer = _Trainer()
    x, y = _tensors(x, y)
    start = time.perf_counter()
    for i in range(settings.full_steps):
        loss = trainer.step(x, y)
        if (i + 1) % 10 == 0 or i + 1 == settings.full_steps:
            loss.item()
    total = time.perf_counter() - start
    accuracy = trainer.accuracy(x, y)
    steady = trainer.steady_ms(x, y, settings.steady_steps)
    return {"total_s": total, "steady_ms": steady, "accuracy": accuracy}


def epoch(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """Shuffled epochs (``torch.randperm``, index, step): the first, then the median warm one."""
    trainer = _Trainer()
    x, y = _tensors(x, y)
    n_batches = x.shape[0] // BATCH
    times = []
    for _ in range(1 + WARM_EPOCHS):
        start = time.perf_counter()
        order = torch.randperm(x.shape[0], device=x.device)
        losses = []
        for i in range(n_batches):
            idx = order[i * BATCH : (i + 1) * BATCH]
            losses.append(trainer.step(x[idx], y[idx]))
        torch.stack(losses).mean().item()
        times.append(time.perf_counter() - start)
    return {
        "first_epoch_s": times[0],
        "epoch_s": float(np.median(times[1:])),
        "step_ms": 1000.0 * float(np.median(times[1:])) / n_batches,
        "accuracy": trainer.accuracy(x, y),
    }


def first_step(x: np.ndarray, y: np.ndarray, settings: Settings) -> dict[str, float]:
    """The first and second full-batch steps; eager PyTorch compiles nothing."""
    trainer = _Trainer()
    x, y = _tensors(x, y)
    laps = []
    for _ in range(2):
        lap = time.perf_counter()
        trainer.step(x, y)
        torch_sync(trainer.device)
        laps.append(time.perf_counter() - lap)
    return {"first_step_s": laps[0], "second_step_s": laps[1]}
