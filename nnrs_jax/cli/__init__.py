"""Command line: ``nnrs-jax train | evaluate | reproduce | rank`` (also ``python -m nnrs_jax``).

A thin layer over `fit`, `evaluate`, `save` and `load`: each flag names one argument of those
functions. With no arguments, ``nnrs-jax`` trains the default recipe (`nnrs_jax.recipes`) and
prints the report. The models and optimizers are built from specs (`nnrs_jax.specs`), which
``train --save`` records in the checkpoint and ``evaluate`` rebuilds from.

* `parser` — the subcommands, their flags and the flag types; the defaults are the recipes'.
* `train` — ``train`` and ``evaluate``; `reproduce` — the nn-rs table; `rank` — ``rank``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nnrs_jax.cli.parser import build_parser
from nnrs_jax.cli.rank import rank_command
from nnrs_jax.cli.reproduce import reproduce_command
from nnrs_jax.cli.train import evaluate_command, train_command

__all__ = ["main"]


DESCRIPTION = (
    "nnrs-jax: train on MNIST, evaluate a saved model, rerun the nn-rs table (the MNIST results "
    "nn-rs published), or test nn-rs's rankings of optimizers and activations. With no "
    "command, train the default recipe. Also: python -m nnrs_jax."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnrs-jax`` console script; returns the exit code."""
    parser, commands = build_parser(DESCRIPTION)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv or ["train"])
    if args.command is None:
        parser.error("choose a command: train, evaluate, reproduce or rank")
    handlers = {
        "train": train_command,
        "evaluate": evaluate_command,
        "reproduce": reproduce_command,
        "rank": rank_command,
    }
    handler = handlers[args.command]
    try:
        return handler(args, commands[args.command])
    except KeyboardInterrupt:  # outside fit's log points: loading data, compiling, a report
        print(f"nnrs-jax {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    except (FileNotFoundError, ValueError) as error:
        print(f"nnrs-jax {args.command}: error: {error}", file=sys.stderr)
        return 1
