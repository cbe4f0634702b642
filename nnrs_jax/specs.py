"""Model and optimizer specs: plain, JSON-serialisable dicts that describe a model and its training.

A spec records *how* to build a model or an optimizer, so a checkpoint can carry it in its
metadata (``nj.save(..., meta={"model": spec})``) and the model can be rebuilt later without the
code that trained it: ``nnrs-jax train`` saves both specs, ``nnrs-jax evaluate`` rebuilds from
them, and `nnrs_jax.recipes` defines its MLP as a spec (`nnrs_jax.recipes.MLP_MODEL`).

Model spec, ``kind`` ``"mlp"`` (the default when ``kind`` is absent)::

    {"kind": "mlp", "arch": [784, 1024, 512, 10], "activation": "relu", "init": "he",
     "regularizer": "l2:5e-5", "loss": "cross_entropy"}

is ``serial(dense(784, 1024), relu(), dense(1024, 512), relu(), dense(512, 10))``: dense layers
of the sizes in ``arch`` (a list of ints or the text ``"784-1024-512-10"``), joined by the
activation (none after the last), each with the weight initialization ``init`` and the
``regularizer`` on its weights (text parsed by `parse_regularizer`; ``"none"`` when absent).
``{"kind": "cnn", "loss": ...}`` is `nnrs_jax.recipes.cnn`, and ``"fast"``, ``"lstm"`` and
``"transformer"`` are `nnrs_jax.recipes.fast`, `nnrs_jax.recipes.lstm` and
`nnrs_jax.recipes.transformer` the same way. ``loss`` names the
training loss.

Optimizer spec: ``{"optimizer": "adam", "lr": 2e-3, "schedule": "cosine"}`` plus the optional
``clip``, ``weight_decay``, ``ema`` and ``accumulate`` (`build_optimizer`).

The name tables (`ACTIVATIONS`, `INITIALIZERS`, `LOSSES`, `OPTIMIZERS`, `MODELS`, `SCHEDULES`)
list every name a spec may use; the command line offers the same names as flag choices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from nnrs_jax import schedules
from nnrs_jax._validate import check_choice, check_float, check_int
from nnrs_jax.layers import Layer, dense, elu, leaky_relu, relu, selu, serial, sigmoid, tanh
from nnrs_jax.losses import Loss, cross_entropy, mse, softmax_mse
from nnrs_jax.optim import (
    Optimizer,
    accumulate,
    adam,
    adamax,
    adamw,
    chain,
    clip_by_global_norm,
    ema,
    matrices_only,
    momentum,
    nadam,
    nesterov,
    rmsprop,
    sgd,
)
from nnrs_jax.regularizers import Regularizer, elastic_net, l1, l2

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "WEIGHT_DECAY",
    "build_loss",
    "build_model",
    "build_optimizer",
    "format_arch",
    "parse_arch",
    "parse_regularizer",
]

ACTIVATIONS: dict[str, Callable[[], Layer]] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "tanh": tanh,
    "sigmoid": sigmoid,
}
INITIALIZERS = ("he", "lecun", "glorot")
LOSSES: dict[str, Loss] = {"cross_entropy": cross_entropy, "mse": mse, "softmax_mse": softmax_mse}
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "rmsprop": rmsprop,
    "adam": adam,
    "nadam": nadam,
    "adamax": adamax,
    "adamw": adamw,
}
MODELS = ("mlp", "cnn", "fast", "lstm", "transformer")
SCHEDULES = ("constant", "cosine", "warmup_cosine")

WEIGHT_DECAY = 1e-4  # adamw's decoupled weight decay when the spec gives none


def parse_arch(text: str) -> list[int]:
    """Layer sizes from text: ``"784-64-10"`` -> ``[784, 64, 10]``.

    At least two sizes (an input and an output), each a whole number >= 1, joined by ``-``.

    Raises:
        ValueError: ``text`` is not of that form (the message shows it).

    Examples:
        >>> parse_arch("784-64-10")
        [784, 64, 10]
    """
    try:
        sizes = [int(part) for part in str(text).split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"parse_arch: text must be two or more sizes >= 1 joined by '-', e.g. '784-64-10', "
            f"got {text!r}"
        )
    return sizes


def format_arch(sizes: list[int] | tuple[int, ...]) -> str:
    """The text `parse_arch` reads: ``[784, 64, 10]`` -> ``"784-64-10"``.

    Examples:
        >>> format_arch([784, 64, 10])
        '784-64-10'
    """
    return "-".join(str(int(size)) for size in sizes)


def parse_regularizer(text: str) -> Regularizer | None:
    """A weight penalty from text: ``none``, ``l1:LAM``, ``l2:LAM`` or ``elastic_net:L1,L2``.

    ``l1:LAM`` is `nnrs_jax.l1` (``LAM·Σ|W|``), ``l2:LAM`` is `nnrs_jax.l2` (``LAM·Σ W²``),
    ``elastic_net:L1,L2`` is `nnrs_jax.elastic_net` (both); ``none`` is no penalty (``None``).

    Raises:
        ValueError: an unknown name, a wrong number of values, or a value the penalty rejects
            (negative, ``inf``, ``nan``).

    Examples:
        >>> parse_regularizer("none") is None
        True
        >>> parse_regularizer("l2:5e-5") == parse_regularizer("l2:0.00005")
        True
    """
    name, _, args = str(text).partition(":")
    try:
        values = [float(v) for v in args.split(",")] if args else []
        if name == "none" and not values:
            return None
        if name in ("l1", "l2") and len(values) == 1:
            return l1(values[0]) if name == "l1" else l2(values[0])
        if name == "elastic_net" and len(values) == 2:
            return elastic_net(*values)
    except ValueError as error:
        raise ValueError(f"parse_regularizer: text {text!r}: {error}") from None
    raise ValueError(
        f"parse_regularizer: text must be none, l1:LAM, l2:LAM or elastic_net:L1,L2, got {text!r}"
    )


def _check_spec(caller: str, spec: object) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise TypeError(f"{caller}: spec must be a dict, got {type(spec).__name__}")
    return spec


def _entry(caller: str, spec: Mapping[str, Any], name: str) -> Any:
    if name not in spec:
        raise ValueError(f"{caller}: spec has no {name!r} entry; it has {sorted(spec)}")
    return spec[name]


def _sizes(spec: Mapping[str, Any]) -> list[int]:
    arch = _entry("build_model", spec, "arch")
    if isinstance(arch, str):
        return parse_arch(arch)
    if not isinstance(arch, list | tuple) or len(arch) < 2:
        raise ValueError(f"build_model: spec['arch'] must be two or more layer sizes, got {arch!r}")
    return [check_int("build_model", f"spec['arch'][{i}]", n, low=1) for i, n in enumerate(arch)]


def build_model(spec: Mapping[str, Any]) -> Layer:
    """The model a model spec describes (format in the module docstring).

    ``kind`` ``"mlp"`` (the default): ``serial(dense(n0, n1), act(), dense(n1, n2), …)`` for
    ``arch`` ``[n0, n1, n2, …]``, input ``(batch, n0)``, output ``(batch, n_last)``;
    ``kind`` ``"cnn"``, ``"fast"``, ``"lstm"`` or ``"transformer"``: that recipe's model
    (`nnrs_jax.recipes.RECIPES`), input ``(batch, 28, 28, 1)``.

    Raises:
        TypeError: ``spec`` is not a dict, or an entry has the wrong type.
        ValueError: a missing entry, or a name or size it does not accept (the message names
            the entry, the accepted values and the value given).

    Examples:
        >>> import nnrs_jax as nj
        >>> spec = {"arch": "784-16-10", "activation": "elu", "init": "he", "loss": "mse"}
        >>> nj.output_shape(build_model(spec), (2, 784))
        (2, 10)
    """
    spec = _check_spec("build_model", spec)
    kind = check_choice("build_model", "spec['kind']", spec.get("kind", "mlp"), MODELS)
    if kind != "mlp":
        # The recipes are built from this module, so they are imported on use.
        from nnrs_jax.recipes import RECIPES

        return RECIPES[kind][0]()
    sizes = _sizes(spec)
    activation = check_choice(
        "build_model", "spec['activation']", _entry("build_model", spec, "activation"),
        tuple(ACTIVATIONS),
    )  # fmt: skip
    init = check_choice(
        "build_model", "spec['init']", _entry("build_model", spec, "init"), INITIALIZERS
    )
    text = spec.get("regularizer", "none")
    try:
        reg = parse_regularizer(text)
    except ValueError as error:
        raise ValueError(f"build_model: spec['regularizer']: {error}") from None
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(ACTIVATIONS[activation]())
        layers.append(dense(n_in, n_out, init=init, regularizer=reg))
    return serial(*layers)


def build_loss(spec: Mapping[str, Any]) -> Loss:
    """The training loss a model spec names: ``LOSSES[spec["loss"]]``.

    Raises:
        TypeError: ``spec`` is not a dict.
        ValueError: no ``loss`` entry, or a name not in `LOSSES`.

    Examples:
        >>> build_loss({"kind": "cnn", "loss": "cross_entropy"}).name
        'cross_entropy'
    """
    spec = _check_spec("build_loss", spec)
    name = check_choice("build_loss", "spec['loss']", _entry("build_loss", spec, "loss"),
                        tuple(LOSSES))  # fmt: skip
    return LOSSES[name]


def build_optimizer(spec: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> Optimizer:
    """The optimizer an optimizer spec describes, its learning rate scheduled over the run.

    ``OPTIMIZERS[spec["optimizer"]](lr)`` with ``lr`` from ``spec["lr"]`` and
    ``spec["schedule"]``: ``"constant"``; ``"cosine"``, `nnrs_jax.schedules.cosine_decay` from
    ``lr`` to 0 over the ``total_steps`` updates; ``"warmup_cosine"``,
    `nnrs_jax.schedules.warmup_cosine_decay`: a linear warm-up over the first epoch
    (``steps_per_epoch`` updates), then cosine decay. Optional entries compose it, outermost
    last:

    * ``weight_decay``: with ``adamw`` only, the decoupled decay rate (default `WEIGHT_DECAY`,
      1e-4) on weight matrices only (`nnrs_jax.matrices_only`; biases exempt) (Loshchilov &
      Hutter 2019);
    * ``clip``: `nnrs_jax.clip_by_global_norm` before the optimizer (Pascanu et al. 2013);
    * ``ema``: `nnrs_jax.ema`, an exponential moving average of the params with this decay,
      read back with `nnrs_jax.ema_params` (Polyak & Juditsky 1992);
    * ``accumulate``: `nnrs_jax.accumulate`, one update every k steps with the mean gradient;
      the schedule then counts updates (``total_steps // k``).

    ``None`` or ``0`` for ``clip``, ``ema`` or ``accumulate`` leaves it out.

    Args:
        spec: the optimizer spec.
        total_steps: gradient steps of the whole run (>= 0).
        steps_per_epoch: gradient steps per epoch (>= 1; 1 for full-batch training).

    Raises:
        TypeError: ``spec`` is not a dict, or a number of the wrong type.
        ValueError: a missing entry, an unknown name, a value out of range, or a
            ``weight_decay`` with an optimizer other than ``adamw``.

    Examples:
        >>> import nnrs_jax as nj
        >>> spec = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "clip": 1.0}
        >>> isinstance(build_optimizer(spec, total_steps=100, steps_per_epoch=10), nj.Optimizer)
        True
    """
    fn = "build_optimizer"
    spec = _check_spec(fn, spec)
    total_steps = check_int(fn, "total_steps", total_steps, low=0)
    steps_per_epoch = check_int(fn, "steps_per_epoch", steps_per_epoch, low=1)
    name = check_choice(fn, "spec['optimizer']", _entry(fn, spec, "optimizer"), tuple(OPTIMIZERS))
    schedule = check_choice(fn, "spec['schedule']", _entry(fn, spec, "schedule"), SCHEDULES)
    lr: Any = check_float(fn, "spec['lr']", _entry(fn, spec, "lr"), low=0.0, low_open=True)
    every = spec.get("accumulate") or 1
    every = check_int(fn, "spec['accumulate']", every, low=1)
    total_steps, steps_per_epoch = total_steps // every, max(steps_per_epoch // every, 1)
    if schedule == "cosine":
        lr = schedules.cosine_decay(lr, max(total_steps, 1))
    elif schedule == "warmup_cosine":
        warmup = min(steps_per_epoch, max(total_steps - 1, 0))
        lr = schedules.warmup_cosine_decay(lr, warmup, max(total_steps, warmup + 1))
    decay = spec.get("weight_decay")
    if decay is not None and name != "adamw":
        raise ValueError(
            f"{fn}: spec['weight_decay'] goes with optimizer 'adamw' (decoupled "
            f"weight decay), got optimizer {name!r} with weight_decay {decay!r}"
        )
    if name == "adamw":
        optimizer = adamw(lr, weight_decay=WEIGHT_DECAY if decay is None else decay,
                          mask=matrices_only)  # fmt: skip
    else:
        optimizer = OPTIMIZERS[name](lr)
    if spec.get("clip"):
        optimizer = chain(clip_by_global_norm(spec["clip"]), optimizer)
    if spec.get("ema"):
        optimizer = ema(optimizer, spec["ema"])
    if every > 1:
        optimizer = accumulate(optimizer, every)
    return optimizer
