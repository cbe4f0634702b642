"""The argparse parser of ``nnrs-jax``: every subcommand, its flags, and the flag types.

Flag types validate while parsing, so a bad value exits with status 2 and the usage line before
any data is loaded or any JAX code runs.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from nnrs_jax import ranking, recipes
from nnrs_jax._validate import check_float
from nnrs_jax.specs import (
    ACTIVATIONS,
    INITIALIZERS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY,
    format_arch,
    parse_arch,
    parse_regularizer,
)

TOLERANCE = 1.5
SEED = 0  # the default random seed of ``train``

RANK_HELP = f"""Rank the optimizers or the activations on MNIST and test nn-rs's claimed order:
  optimizers:  {ranking.OPTIMIZER_CLAIM}
               (784-16-10 ELU, He init; GD full batch, the others mini-batch)
  activations: {ranking.ACTIVATION_CLAIM}
               (784-16-10, Adam; LeCun init for SELU, He for the others)

{textwrap.fill("Protocol: " + ranking.describe(ranking.FULL), 92)}

Prints a table variant | lr | test % mean ± sd | rank, then for each adjacent pair of the
claim whether it holds, is reversed or is not distinguishable, then a one-line summary.
The full run takes a few minutes on a 2-core CPU (most of it the full-batch GD runs)."""


def _spec_error(error: ValueError, function: str) -> argparse.ArgumentTypeError:
    """A `nnrs_jax.specs` parse error as a flag error (argparse names the flag)."""
    return argparse.ArgumentTypeError(str(error).removeprefix(f"{function}: text "))


def _arch_flag(text: str) -> list[int]:
    """``--arch``: layer sizes joined by ``-`` (`nnrs_jax.specs.parse_arch`)."""
    try:
        return parse_arch(text)
    except ValueError as error:
        raise _spec_error(error, "parse_arch") from None


def _regularizer_flag(text: str) -> str:
    """Validate ``--regularizer`` while parsing; keep the text, which goes into saved metadata."""
    try:
        parse_regularizer(text)
    except ValueError as error:
        raise _spec_error(error, "parse_regularizer") from None
    return text


def _positive_float(text: str) -> float:
    """A number > 0 (``--lr``, ``--clip``)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _checked_float(text: str, command: str, flag: str, message: str, **bounds: Any) -> float:
    """``float(text)`` within `check_float`'s ``bounds``, else the flag error ``message``."""
    try:
        return check_float(command, flag, float(text), **bounds)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None


def _non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--weight-decay``)."""
    message = f"must be a finite number >= 0, got {text}"
    return _checked_float(text, "train", "--weight-decay", message, low=0.0)


def _decay(text: str) -> float:
    """A moving-average decay in [0, 1) (``--ema``)."""
    message = f"must satisfy 0 <= DECAY < 1, got {text}"
    return _checked_float(text, "train", "--ema", message, low=0.0, high=1.0, high_open=True)


def _fraction(text: str) -> float:
    """A fraction in (0, 1) (``--validation-split``)."""
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def _positive_int(text: str) -> int:
    """A whole number >= 1 (epochs, batch sizes, patience, counts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _at_least_two(text: str) -> int:
    """A whole number >= 2 (``rank --seeds``: a standard deviation needs two)."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (a standard deviation), got {text}")
    return value


def _tolerance(text: str) -> float:
    """A finite number of accuracy points >= 0 (``reproduce --tolerance``)."""
    message = f"--tolerance must be a finite number of points >= 0, got {text!r}"
    return _checked_float(text, "reproduce", "--tolerance", message, low=0.0)


def _per_recipe(name: str) -> str:
    """A training default as help text: the MLP recipe's, then each other recipe's that differs."""

    def show(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    mlp = getattr(recipes.MLP, name)
    others = [f"{model} {show(getattr(recipe, name))}"
              for model, (_, recipe) in recipes.RECIPES.items()
              if getattr(recipe, name) != mlp]  # fmt: skip
    return "; ".join([show(mlp), *others])


def require_matplotlib(parser: argparse.ArgumentParser) -> None:
    """Fail before any training when --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.error("--plot needs matplotlib: pip install 'nnrs-jax[notebooks]'")


def _data_flags(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-verify``, which every subcommand that reads MNIST takes."""
    parser.add_argument("--data-dir", help="folder holding the MNIST idx files (else the "
                        "NNRS_JAX_DATA variable, data/, ~/.cache/nnrs_jax)")  # fmt: skip
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the MNIST checksums: any MNIST-format idx folder "
                        "(e.g. Fashion-MNIST)")  # fmt: skip


def build_parser(
    description: str,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``nnrs-jax`` parser and its subcommand parsers by name (for their ``error``)."""
    parser = argparse.ArgumentParser(prog="nnrs-jax", description=description)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     help="what to do (default: train)")  # fmt: skip
    # The defaults are the recipes' (nj.recipes): the MLP's model spec and training settings.
    m, cnn, fast = recipes.MLP_MODEL, recipes.CNN, recipes.FAST
    lstm, vit = recipes.LSTM, recipes.TRANSFORMER

    train = commands.add_parser("train", help="train on MNIST and print the test report",
                                description="Train on MNIST and print the test report. The "
                                "defaults are the MLP recipe (nj.recipes.MLP_MODEL, "
                                "nj.recipes.MLP; docs/recipe.md).")  # fmt: skip
    train.add_argument("--model", default="mlp", choices=MODELS,
                       help="mlp: dense layers from --arch (default recipe: "
                       f"{format_arch(m['arch'])}); cnn: the CNN recipe (nj.recipes.cnn, "
                       f"docs/cnn_recipe.md), {cnn.epochs} epochs of {cnn.batch_size}, random "
                       "shifts of one pixel; fast: a small CNN trained in seconds (nj.recipes."
                       f"fast, docs/fast_recipe.md), {fast.epochs} epochs of {fast.batch_size}; "
                       "lstm: an LSTM reading the 28 rows (nj.recipes.lstm, "
                       f"docs/sequence_recipes.md), {lstm.epochs} epochs of {lstm.batch_size}; "
                       "transformer: a vision transformer over 7x7 patches (nj.recipes."
                       f"transformer), {vit.epochs} epochs of {vit.batch_size}")  # fmt: skip
    train.add_argument("--arch", default=list(m["arch"]), type=_arch_flag,
                       help="layer sizes of the MLP joined by '-', e.g. 784-64-32-16-10 "
                       f"(default {format_arch(m['arch'])})")  # fmt: skip
    train.add_argument("--activation", default=m["activation"], choices=sorted(ACTIVATIONS),
                       help=f"hidden activation of the MLP ({m['activation']})")  # fmt: skip
    train.add_argument("--init", default=m["init"], choices=INITIALIZERS,
                       help=f"weight initialization of the MLP ({m['init']})")  # fmt: skip
    train.add_argument("--regularizer", default=m["regularizer"], type=_regularizer_flag,
                       help="penalty on the MLP's weights: none | l1:LAM | l2:LAM | "
                       f"elastic_net:L1,L2 ({m['regularizer']})")  # fmt: skip
    train.add_argument("--loss", default=m["loss"], choices=sorted(LOSSES),
                       help=f"training loss ({m['loss']})")  # fmt: skip
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                       help=f"optimizer (default {_per_recipe('optimizer')})")  # fmt: skip
    train.add_argument(
        "--lr",
        type=_positive_float,
        help=f"learning rate (default {_per_recipe('lr')})",
    )
    train.add_argument(
        "--clip",
        type=_positive_float,
        metavar="MAX_NORM",
        help="clip each gradient to this global norm",
    )
    train.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        metavar="RATE",
        help=f"decoupled weight decay on the weights (with --optimizer adamw; default "
        f"{WEIGHT_DECAY:g})",
    )
    train.add_argument(
        "--ema",
        type=_decay,
        metavar="DECAY",
        help="keep an exponential moving average of the params (e.g. 0.999) and evaluate with it",
    )
    train.add_argument(
        "--accumulate",
        type=_positive_int,
        metavar="K",
        help="update once every K mini-batches with their mean gradient",
    )
    train.add_argument("--schedule", default=None, choices=SCHEDULES,
                       help="learning-rate schedule (default for --epochs: "
                       f"{_per_recipe('schedule')}; constant for --steps)")  # fmt: skip
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=int, help="full-batch gradient steps (nn-rs's mode)")
    mode.add_argument("--epochs", type=_positive_int,
                      help=f"mini-batch epochs ({_per_recipe('epochs')})")  # fmt: skip
    train.add_argument("--batch-size", type=_positive_int,
                       help=f"mini-batch size ({_per_recipe('batch_size')})")  # fmt: skip
    train.add_argument("--seed", default=SEED, type=int,
                       help=f"random seed of the initialization, the shuffles, dropout and "
                       f"augmentation ({SEED})")  # fmt: skip
    train.add_argument("--validation-split", type=_fraction, metavar="FRACTION",
                       help="hold the last FRACTION of the training set out and evaluate it "
                       "at every log point")  # fmt: skip
    train.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                       help="with --validation-split: stop when the validation loss has not "
                       "improved for PATIENCE log points, and keep the best params")  # fmt: skip
    train.add_argument("--backup-dir", metavar="DIR",
                       help="back the run up in DIR at every log point; rerun the same "
                       "command to resume an interrupted run (removed at the end)")  # fmt: skip
    _data_flags(train)
    train.add_argument("--save", metavar="PATH", help="write the trained model to this .npz file")
    train.add_argument("--save-csv", metavar="DIR",
                       help="write the dense weights to DIR in nn-rs's CSV format, w{i}.csv and "
                       "b{i}.csv (nj.save_csv_weights)")  # fmt: skip
    train.add_argument("--log-every", default=10, type=_positive_int, metavar="N",
                       help="with --steps: read the metrics back, and print a line, every N "
                       "steps (10)")  # fmt: skip
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--plot", metavar="PATH",
                       help="write the loss and accuracy curves as a PNG")  # fmt: skip
    train.add_argument("--history", metavar="PATH",
                       help="write the per-step or per-epoch history as CSV")  # fmt: skip
    scale = train.add_argument_group(
        "several processes", "train data parallel over every process's devices (jax.distributed); "
        "run the same command on each process; process 0 prints and writes the files")  # fmt: skip
    scale.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0 (else JAX_COORDINATOR_ADDRESS)")  # fmt: skip
    scale.add_argument("--num-processes", type=_positive_int, metavar="N",
                       help="how many processes take part")  # fmt: skip
    scale.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")
    scale.add_argument("--distributed", action="store_true",
                       help="join a run described by the environment: JAX_COORDINATOR_ADDRESS "
                       "and the cluster JAX detects (Slurm, Open MPI, Kubernetes)")  # fmt: skip

    evaluate = commands.add_parser(
        "evaluate", help="print the test report of a saved model",
        description="Print the MNIST test report of a model saved by train --save, rebuilt "
        "from the description in the file.",
    )  # fmt: skip
    evaluate.add_argument("--load", required=True, metavar="PATH",
                          help="a .npz written by train --save")  # fmt: skip
    _data_flags(evaluate)

    reproduce = commands.add_parser(
        "reproduce", help="rerun the nn-rs table: the MNIST results nn-rs published",
        description="Rerun each row of the nn-rs table (the MNIST results nn-rs published) "
        "with nn-rs's full-batch training, and print our test accuracy beside nn-rs's.",
    )  # fmt: skip
    reproduce.add_argument("--rows", help="rows of the nn-rs table, e.g. 1 or 2,4 or 1-3 "
                           "(default: all)")  # fmt: skip
    reproduce.add_argument("--seeds", default=1, type=_positive_int, metavar="N",
                           help="average each row over N random seeds (1)")  # fmt: skip
    reproduce.add_argument("--tolerance", default=TOLERANCE, type=_tolerance, metavar="POINTS",
                           help="exit with status 1 if a row's accuracy is more than POINTS "
                           f"below the nn-rs table's (default {TOLERANCE})")  # fmt: skip
    _data_flags(reproduce)

    rank = commands.add_parser(
        "rank", help="rank the optimizers or activations on MNIST and test nn-rs's claim",
        description=RANK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    rank.add_argument("what", choices=["optimizers", "activations"],
                      help="the claim to test: optimizers or activations")  # fmt: skip
    full = ranking.FULL
    rank.add_argument(
        "--seeds",
        type=_at_least_two,
        metavar="N",
        help=f"random seeds per variant at the chosen rate ({full.seeds})",
    )
    rank.add_argument("--steps", type=_positive_int,
                      help=f"updates per run, a whole number of epochs ({full.steps})")  # fmt: skip
    rank.add_argument("--quick", action="store_true",
                      help="small settings for a smoke test: 2000 training images, 40 steps of "
                      "batch 100, 3 seeds")  # fmt: skip
    rank.add_argument("--plot", metavar="PATH",
                      help="write mean curves (±1 sd bands) and accuracies as a PNG")  # fmt: skip
    _data_flags(rank)
    return parser, {"train": train, "evaluate": evaluate, "reproduce": reproduce, "rank": rank}
