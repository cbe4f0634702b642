"""Model and optimizer specs: the plain dicts that `train` saves and `evaluate` rebuilds from.

A model spec is ``{"kind": "cnn", "loss": ...}`` or ``{"arch", "activation", "init",
"regularizer", "loss"}``; an optimizer spec is ``{"optimizer", "lr", "schedule"}`` with the
optional ``clip``, ``weight_decay``, ``ema`` and ``accumulate``. Both go into a checkpoint's
metadata, so a saved model can be evaluated without the flags that trained it.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import nnrs_jax as nj

ACTIVATIONS = {
    "relu": nj.relu,
    "leaky_relu": nj.leaky_relu,
    "elu": nj.elu,
    "selu": nj.selu,
    "tanh": nj.tanh,
    "sigmoid": nj.sigmoid,
}
LOSSES = {"cross_entropy": nj.cross_entropy, "mse": nj.mse, "softmax_mse": nj.softmax_mse}
OPTIMIZERS = {
    "sgd": nj.sgd,
    "momentum": nj.momentum,
    "nesterov": nj.nesterov,
    "rmsprop": nj.rmsprop,
    "adam": nj.adam,
    "nadam": nj.nadam,
    "adamax": nj.adamax,
    "adamw": nj.adamw,
}
MODELS = ("mlp", "cnn")
SCHEDULES = ("constant", "cosine", "warmup_cosine")

# The default recipe (docs/recipe.md has the experiments behind it): the model of
# `nj.recipes.mlp` as flags (a test checks that they build the same model), trained with
# `nj.recipes.MLP`.
DEFAULT_RECIPE: dict[str, Any] = {
    "arch": "784-1024-512-10",
    "activation": "relu",
    "init": "he",
    "regularizer": "l2:5e-5",
    "loss": "cross_entropy",
    **nj.recipes.MLP._asdict(),
    "seed": 0,
}
del DEFAULT_RECIPE["augment"]  # no flag: the MLP recipe draws no augmentation


def parse_arch(text: str) -> list[int]:
    """``"784-64-10"`` -> ``[784, 64, 10]``; at least an input and an output size.

    >>> parse_arch("784-64-10")
    [784, 64, 10]
    """
    try:
        sizes = [int(part) for part in text.split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"--arch must be sizes joined by '-', e.g. 784-64-10, got {text!r}"
        )
    return sizes


def parse_regularizer(text: str) -> nj.Regularizer | None:
    """``none``, ``l1:LAM``, ``l2:LAM`` or ``elastic_net:L1,L2`` -> a regularizer.

    >>> parse_regularizer("none") is None
    True
    """
    name, _, args = text.partition(":")
    try:
        values = [float(v) for v in args.split(",")] if args else []
        if name == "none" and not values:
            return None
        if name in ("l1", "l2") and len(values) == 1:
            return nj.l1(values[0]) if name == "l1" else nj.l2(values[0])
        if name == "elastic_net" and len(values) == 2:
            return nj.elastic_net(*values)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--regularizer {text!r}: {error}") from None
    raise argparse.ArgumentTypeError(
        f"--regularizer must be none, l1:LAM, l2:LAM or elastic_net:L1,L2, got {text!r}"
    )


def build_model(spec: dict[str, Any]) -> nj.Layer:
    """The model a spec describes: ``{"kind": "cnn"}`` is `nnrs_jax.recipes.cnn`; otherwise an
    MLP of dense layers joined by the activation, none after the last."""
    if spec.get("kind", "mlp") == "cnn":
        return nj.recipes.cnn()
    sizes = parse_arch(spec["arch"]) if isinstance(spec["arch"], str) else spec["arch"]
    reg = parse_regularizer(spec.get("regularizer", "none"))
    layers: list[nj.Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(ACTIVATIONS[spec["activation"]]())
        layers.append(nj.dense(n_in, n_out, init=spec["init"], regularizer=reg))
    return nj.serial(*layers)


def build_optimizer(spec: dict[str, Any], total_steps: int, steps_per_epoch: int) -> nj.Optimizer:
    """The optimizer of a spec, with its learning-rate schedule over ``total_steps``.

    Optional entries compose it: ``clip`` (``clip_by_global_norm`` before the optimizer),
    ``weight_decay`` (with ``adamw``, biases exempt), ``ema`` (an average of the params, used
    for evaluation) and ``accumulate`` (one update every k steps, the schedule counting updates).
    """
    every = spec.get("accumulate") or 1
    total_steps, steps_per_epoch = total_steps // every, max(steps_per_epoch // every, 1)
    lr: Any = spec["lr"]
    if spec["schedule"] == "cosine":
        lr = nj.schedules.cosine_decay(lr, max(total_steps, 1))
    elif spec["schedule"] == "warmup_cosine":
        warmup = min(steps_per_epoch, max(total_steps - 1, 0))
        lr = nj.schedules.warmup_cosine_decay(lr, warmup, max(total_steps, warmup + 1))
    if spec["optimizer"] == "adamw":
        decay = spec.get("weight_decay")
        optimizer = nj.adamw(lr, weight_decay=1e-4 if decay is None else decay,
                             mask=nj.matrices_only)  # fmt: skip
    else:
        optimizer = OPTIMIZERS[spec["optimizer"]](lr)
    if spec.get("clip"):
        optimizer = nj.chain(nj.clip_by_global_norm(spec["clip"]), optimizer)
    if spec.get("ema"):
        optimizer = nj.ema(optimizer, spec["ema"])
    if every > 1:
        optimizer = nj.accumulate(optimizer, every)
    return optimizer


def eval_params(spec: dict[str, Any], result_params: Any, opt_state: Any) -> Any:
    """The params to evaluate: the moving average when the optimizer keeps one."""
    return nj.ema_params(opt_state) if spec.get("ema") else result_params
