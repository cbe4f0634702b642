"""``nnrs-jax rank``: rank the optimizers or the activations and test nn-rs's claimed order.

The protocol, the statistics and the table are `nnrs_jax.ranking`'s; this module reads the
flags, reports each variant as it finishes, and prints the verdicts.
"""

from __future__ import annotations

import argparse
import textwrap
import time

import numpy as np

import nnrs_jax as nj
from nnrs_jax import plotting, ranking
from nnrs_jax.cli.parser import require_matplotlib
from nnrs_jax.cli.train import load_data


def rank_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``nnrs-jax rank optimizers|activations``: the ranking, the verdicts and a summary."""
    protocol = ranking.QUICK if args.quick else ranking.FULL
    if args.seeds is not None:
        protocol = protocol._replace(seeds=args.seeds)
    if args.steps is not None:
        protocol = protocol._replace(steps=args.steps)
    if args.plot:
        require_matplotlib(parser)
    if args.what == "optimizers":
        variants, claim = ranking.optimizer_variants(), ranking.OPTIMIZER_CLAIM
    else:
        variants, claim = ranking.activation_variants(), ranking.ACTIVATION_CLAIM
    x, y = load_data(args, "train")
    xt, yt = load_data(args, "test")
    nj.enable_compilation_cache()
    print(textwrap.fill(ranking.describe(protocol, len(x) - protocol.validation_size), 100))
    start = time.perf_counter()

    def report(r: ranking.VariantResult) -> None:
        print(f"{r.name}: lr {r.learning_rate:g} (best validation accuracy "
              f"{100 * np.nanmax(r.validation):.2f}%), test {r.mean:.2f} ± {r.sd:.2f}% "
              f"({r.seconds:.1f} s)", flush=True)  # fmt: skip

    result = ranking.rank(variants, x, y, xt, yt, protocol, progress=report)
    verdicts = ranking.check_claim(result, claim)
    print()
    print(ranking.format_ranking(result))
    print()
    print(f"claimed: {claim}")
    print(ranking.format_verdicts(verdicts))
    print()
    print(ranking.summary(args.what, verdicts, result))
    print(f"time: {time.perf_counter() - start:.0f} s (compilation included)")
    if args.plot:
        plotting.plot_ranking(result, args.plot, title=f"{args.what}: {claim}")
        print(f"saved the figure to {args.plot}")
    return 0
