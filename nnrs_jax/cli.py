"""Command line: ``nnrs-jax train | evaluate | reproduce`` (also ``python -m nnrs_jax``).

A thin layer over `fit`, `evaluate`, `save` and `load`: each flag names one argument of those
functions. With no arguments, ``nnrs-jax`` trains the default recipe and prints the report.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import nnrs_jax as nj

__all__ = ["DEFAULT_RECIPE", "build_model", "build_optimizer", "main"]

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
}
SCHEDULES = ("constant", "cosine", "warmup_cosine")

# The default recipe (see docs/recipe.md for the experiments behind it).
DEFAULT_RECIPE: dict[str, Any] = {
    "arch": "784-1024-512-10",
    "activation": "relu",
    "init": "he",
    "regularizer": "l2:5e-5",
    "loss": "cross_entropy",
    "optimizer": "adam",
    "lr": 2e-3,
    "schedule": "cosine",
    "epochs": 12,
    "batch_size": 256,
    "seed": 0,
}


def parse_arch(text: str) -> list[int]:
    """``"784-64-10"`` -> ``[784, 64, 10]``; at least an input and an output size."""
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
    """``none``, ``l1:LAM``, ``l2:LAM`` or ``elastic_net:L1,L2`` -> a regularizer."""
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
    """The MLP a spec describes: dense layers joined by the activation, none after the last."""
    sizes = parse_arch(spec["arch"]) if isinstance(spec["arch"], str) else spec["arch"]
    reg = parse_regularizer(spec.get("regularizer", "none"))
    layers: list[nj.Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(ACTIVATIONS[spec["activation"]]())
        layers.append(nj.dense(n_in, n_out, init=spec["init"], regularizer=reg))
    return nj.serial(*layers)


def build_optimizer(spec: dict[str, Any], total_steps: int, steps_per_epoch: int) -> nj.Optimizer:
    """The optimizer of a spec, with its learning-rate schedule over ``total_steps``."""
    lr: Any = spec["lr"]
    if spec["schedule"] == "cosine":
        lr = nj.schedules.cosine_decay(lr, max(total_steps, 1))
    elif spec["schedule"] == "warmup_cosine":
        warmup = min(steps_per_epoch, max(total_steps - 1, 0))
        lr = nj.schedules.warmup_cosine_decay(lr, warmup, max(total_steps, warmup + 1))
    return OPTIMIZERS[spec["optimizer"]](lr)


def _regularizer_flag(text: str) -> str:
    """Validate ``--regularizer`` while parsing; keep the text, which goes into saved metadata."""
    parse_regularizer(text)
    return text


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder holding the MNIST idx files (else the "
                        "NNRS_JAX_DATA variable, data/, ~/.cache/nnrs_jax)")  # fmt: skip
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the MNIST checksums: any MNIST-format idx folder "
                        "(e.g. Fashion-MNIST)")  # fmt: skip


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="nnrs-jax", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    d = DEFAULT_RECIPE

    train = commands.add_parser("train", help="train on MNIST and print the test report")
    train.add_argument("--arch", default=d["arch"], type=parse_arch, help="e.g. 784-64-32-16-10")
    train.add_argument("--activation", default=d["activation"], choices=sorted(ACTIVATIONS))
    train.add_argument("--init", default=d["init"], choices=["he", "lecun", "glorot"])
    train.add_argument("--regularizer", default=d["regularizer"], type=_regularizer_flag,
                       help="none | l1:LAM | l2:LAM | elastic_net:L1,L2")  # fmt: skip
    train.add_argument("--loss", default=d["loss"], choices=sorted(LOSSES))
    train.add_argument("--optimizer", default=d["optimizer"], choices=sorted(OPTIMIZERS))
    train.add_argument("--lr", default=d["lr"], type=_positive_float, help="learning rate")
    train.add_argument("--schedule", default=None, choices=SCHEDULES,
                       help=f"learning-rate schedule (default: {d['schedule']} for epochs, "
                       "constant for --steps)")  # fmt: skip
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=int, help="full-batch gradient steps (the seed's mode)")
    mode.add_argument("--epochs", type=_positive_int, help=f"mini-batch epochs ({d['epochs']})")
    train.add_argument("--batch-size", type=_positive_int,
                       help=f"mini-batch size ({d['batch_size']})")  # fmt: skip
    train.add_argument("--seed", default=d["seed"], type=int)
    _data_flags(train)
    train.add_argument("--save", help="write the trained model to this .npz file")
    train.add_argument("--save-csv", help="write the weights in the seed's CSV format here")
    train.add_argument("--log-every", default=10, type=_positive_int)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser("evaluate", help="print the test report of a saved model")
    evaluate.add_argument("--load", required=True, help="a .npz written by train --save")
    _data_flags(evaluate)

    reproduce = commands.add_parser("reproduce", help="rerun the seed's published MNIST table")
    reproduce.add_argument("--rows", help="row numbers, e.g. 1 or 2,4 or 1-3 (default: all)")
    reproduce.add_argument("--seeds", default=1, type=_positive_int,
                           help="average each row over this many seeds")  # fmt: skip
    _data_flags(reproduce)
    return parser, {"train": train, "evaluate": evaluate, "reproduce": reproduce}


def _load_data(args: argparse.Namespace, split: str) -> tuple[np.ndarray, np.ndarray]:
    return nj.datasets.mnist(split, data_dir=args.data_dir, verify=not args.no_verify)


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.steps is not None and args.batch_size is not None:
        parser.error("--batch-size goes with --epochs, not with --steps (full batch)")
    if args.steps is not None and args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    full_batch = args.steps is not None
    spec = {
        "arch": args.arch, "activation": args.activation, "init": args.init,
        "regularizer": args.regularizer, "loss": args.loss,
    }  # fmt: skip
    x, y = _load_data(args, "train")
    xt, yt = _load_data(args, "test")
    classes = int(max(y.max(), yt.max())) + 1
    if args.arch[0] != x.shape[1] or args.arch[-1] != classes:
        parser.error(
            f"--arch must start with {x.shape[1]} inputs and end with {classes} classes for "
            f"this data, got {'-'.join(map(str, args.arch))}"
        )
    epochs = None if full_batch else args.epochs or DEFAULT_RECIPE["epochs"]
    batch_size = None if full_batch else args.batch_size or DEFAULT_RECIPE["batch_size"]
    steps_per_epoch = 1 if full_batch else x.shape[0] // batch_size
    total = args.steps if full_batch else epochs * steps_per_epoch
    schedule = args.schedule or ("constant" if full_batch else DEFAULT_RECIPE["schedule"])
    opt_spec = {"optimizer": args.optimizer, "lr": args.lr, "schedule": schedule}
    model = build_model(spec)
    optimizer = build_optimizer(opt_spec, total, steps_per_epoch)
    mode = f"{args.steps} full-batch steps" if full_batch else f"{epochs} epochs of {batch_size}"
    print(f"model: {model.name}")
    print(f"training: {args.loss}, {args.optimizer} lr {args.lr} ({schedule}), {mode}, "
          f"seed {args.seed}, {x.shape[0]} examples")  # fmt: skip
    nj.enable_compilation_cache()
    start = time.perf_counter()
    result = nj.fit(
        model, LOSSES[args.loss], optimizer, x, y, key=jax.random.key(args.seed),
        steps=args.steps, epochs=epochs, batch_size=batch_size,
        log_every=args.log_every, progress=not args.no_progress,
    )  # fmt: skip
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    h = result.history
    unit = "Iteration" if full_batch else "Epoch"
    index = h["step"] if full_batch else h["epoch"] + 1
    for i in range(len(index)):
        if not full_batch or i % args.log_every == 0 or i == len(index) - 1:
            print(f"{unit} {index[i]}: loss = {h['loss'][i]:.6f}, "
                  f"accuracy = {100 * h['accuracy'][i]:.2f}%")  # fmt: skip
    print(f"training time: {seconds:.1f} s (compilation included)")
    report = nj.evaluate(model, result.params, xt, yt, LOSSES[args.loss])
    print(report)
    if args.save:
        meta = {"model": spec, "optimizer": opt_spec}
        nj.save(args.save, result.params, step=int(result.opt_state.timestep),
                key=jax.random.key(args.seed), meta=meta)  # fmt: skip
        print(f"saved model to {args.save}")
    if args.save_csv:
        nj.save_csv(args.save_csv, result.params)
        print(f"saved CSV weights to {args.save_csv}")
    print(f"test accuracy: {100 * report.accuracy:.2f}%")
    return 0


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    meta = nj.load_meta(args.load)
    if not meta or "model" not in meta:
        parser.error(f"--load {args.load}: the file has no model description (save it with "
                     "nnrs-jax train --save, or nj.save(..., meta={'model': spec}))")  # fmt: skip
    spec = meta["model"]
    model = build_model(spec)
    template = jax.eval_shape(model.init, jax.random.key(0))
    params = nj.load(args.load, like=template).params
    xt, yt = _load_data(args, "test")
    report = nj.evaluate(model, params, xt, yt, LOSSES[spec["loss"]])
    print(f"model: {model.name}")
    print(report)
    print(f"test accuracy: {100 * report.accuracy:.2f}%")
    return 0


# The seed's published MNIST table: 150 full-batch iterations (its loop ran 0..=150, 151 steps).
SEED_TABLE: list[tuple[str, dict[str, Any], float]] = [
    ("784-64-32-16-10 He elastic-net ELU Nadam 5e-4",
     {"arch": "784-64-32-16-10", "init": "he", "regularizer": "elastic_net:1e-4,1e-4",
      "activation": "elu", "optimizer": "nadam", "lr": 5e-4}, 91.88),
    ("784-16-10 He ELU Nadam 0.01",
     {"arch": "784-16-10", "init": "he", "activation": "elu", "optimizer": "nadam", "lr": 0.01},
     94.43),
    ("784-16-10 LeakyReLU Momentum 0.01",
     {"arch": "784-16-10", "init": "he", "activation": "leaky_relu", "optimizer": "momentum",
      "lr": 0.01}, 87.29),
    ("784-16-10 ELU RMSProp 0.01",
     {"arch": "784-16-10", "init": "he", "activation": "elu", "optimizer": "rmsprop",
      "lr": 0.01}, 93.72),
    ("784-16-10 SELU RMSProp 0.01",
     {"arch": "784-16-10", "init": "lecun", "activation": "selu", "optimizer": "rmsprop",
      "lr": 0.01}, 91.59),
    ("784-16-10 ELU Adam 0.01",
     {"arch": "784-16-10", "init": "he", "activation": "elu", "optimizer": "adam", "lr": 0.01},
     92.46),
    ("784-16-10 ELU Nadam 0.01",
     {"arch": "784-16-10", "init": "he", "activation": "elu", "optimizer": "nadam", "lr": 0.01},
     92.94),
    ("784-16-10 He ELU RMSProp 0.001",
     {"arch": "784-16-10", "init": "he", "activation": "elu", "optimizer": "rmsprop",
      "lr": 0.001}, 92.66),
]  # fmt: skip
SEED_STEPS = 151
TOLERANCE = 1.5


def parse_rows(text: str | None) -> list[int]:
    """``"1"``, ``"2,4"``, ``"1-3"`` -> 1-based row numbers of `SEED_TABLE`."""
    if text is None:
        return list(range(1, len(SEED_TABLE) + 1))
    rows: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            rows += range(int(low), int(high or low) + 1)
    except ValueError:
        rows = []
    if not rows or min(rows) < 1 or max(rows) > len(SEED_TABLE):
        raise argparse.ArgumentTypeError(
            f"--rows must name rows 1..{len(SEED_TABLE)}, e.g. 1 or 2,4 or 1-3, got {text!r}"
        )
    return rows


def _reproduce(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        rows = parse_rows(args.rows)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    x, y = _load_data(args, "train")
    xt, yt = _load_data(args, "test")
    nj.enable_compilation_cache()
    width = max(len(SEED_TABLE[r - 1][0]) for r in rows)
    print(f"{'config':<{width}} | seed % | ours %")
    print(f"{'-' * width}-|--------|-------")
    met = 0
    for r in rows:
        label, spec, seed_accuracy = SEED_TABLE[r - 1]
        spec = {"loss": "cross_entropy", "regularizer": "none", **spec, "schedule": "constant"}
        model = build_model(spec)
        accuracies = []
        for seed in range(args.seeds):
            result = nj.fit(model, nj.cross_entropy, build_optimizer(spec, SEED_STEPS, 1), x, y,
                            key=jax.random.key(seed), steps=SEED_STEPS, progress=False)  # fmt: skip
            accuracies.append(100 * nj.evaluate(model, result.params, xt, yt).accuracy)
        ours = float(np.mean(accuracies))
        met += ours >= seed_accuracy - TOLERANCE
        spread = f" (±{np.std(accuracies):.2f}, {args.seeds} seeds)" if args.seeds > 1 else ""
        print(f"{label:<{width}} | {seed_accuracy:6.2f} | {ours:6.2f}{spread}", flush=True)
    print(f"{met}/{len(rows)} rows within {TOLERANCE} points of the seed or better "
          f"({SEED_STEPS} full-batch steps each)")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnrs-jax`` console script; returns the exit code."""
    parser, commands = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv or ["train"])
    if args.command is None:
        parser.error("choose a command: train, evaluate or reproduce")
    handler = {"train": _train, "evaluate": _evaluate, "reproduce": _reproduce}[args.command]
    try:
        return handler(args, commands[args.command])
    except (FileNotFoundError, ValueError) as error:
        print(f"nnrs-jax {args.command}: error: {error}", file=sys.stderr)
        return 1
