"""``nnrs-jax train`` and ``nnrs-jax evaluate``: fit a model from the flags, report, save.

`train` joins a multi-process run when asked, trains with `fit`, prints the history and the
test report, and writes the files the flags name; Ctrl-C saves what was reached and exits 130.
`evaluate` rebuilds the model from a checkpoint's metadata (the specs of `nnrs_jax.specs`) and
prints its test report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jax
import numpy as np

import nnrs_jax as nj
from nnrs_jax import plotting
from nnrs_jax.cli.parser import require_matplotlib
from nnrs_jax.specs import build_loss, build_model, build_optimizer


def load_data(
    args: argparse.Namespace, split: str, flatten: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` from ``--data-dir``, checksums verified unless ``--no-verify``."""
    return nj.datasets.mnist(
        split, data_dir=args.data_dir, verify=not args.no_verify, flatten=flatten
    )


def model_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The model spec (`nnrs_jax.specs`) the ``train`` flags describe; saved in the metadata.

    With the default flags it equals `nnrs_jax.recipes.MLP_MODEL`.
    """
    if args.model != "mlp":
        return {"kind": args.model, "loss": args.loss}
    return {
        "kind": "mlp", "arch": list(args.arch), "activation": args.activation, "init": args.init,
        "regularizer": args.regularizer, "loss": args.loss,
    }  # fmt: skip


def _eval_params(opt_spec: dict[str, Any], params: Any, opt_state: Any) -> Any:
    """The params to evaluate: the moving average when the optimizer keeps one."""
    return nj.ema_params(opt_state) if opt_spec.get("ema") else params


def _join(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """Join the multi-process run the flags describe: its mesh, or ``None`` for one process."""
    flags = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and flags == (None, None, None):
        return None
    try:
        nj.parallel.initialize(*flags)
    except (ValueError, RuntimeError) as error:
        parser.error(str(error))
    if not nj.parallel.is_main_process():
        # Process 0 reports and writes; the others train alongside it, silently.
        args.save = args.save_csv = args.history = args.plot = None
        args.no_progress = True
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    return nj.parallel.data_mesh()


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``nnrs-jax train``: returns 0, or 130 when interrupted during training."""
    if args.steps is not None and args.batch_size is not None:
        parser.error("--batch-size goes with --epochs, not with --steps (full batch)")
    if args.steps is not None and args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    images = args.model != "mlp"  # the recipes other than the MLP read NHWC images
    recipe = nj.recipes.RECIPES[args.model][1]
    optimizer_name = args.optimizer or recipe.optimizer
    if args.weight_decay is not None and optimizer_name != "adamw":
        parser.error("--weight-decay goes with --optimizer adamw (decoupled weight decay)")
    if args.early_stopping is not None and args.validation_split is None:
        parser.error("--early-stopping watches the validation loss: add --validation-split")
    if args.plot:
        require_matplotlib(parser)
    mesh = _join(args, parser)  # before any other JAX call
    full_batch = args.steps is not None
    spec = model_spec(args)
    x, y = load_data(args, "train", flatten=not images)
    xt, yt = load_data(args, "test", flatten=not images)
    classes = int(max(y.max(), yt.max())) + 1
    if not images and (args.arch[0] != x.shape[1] or args.arch[-1] != classes):
        parser.error(
            f"--arch must start with {x.shape[1]} inputs and end with {classes} classes for "
            f"this data, got {'-'.join(map(str, args.arch))}"
        )
    epochs = None if full_batch else args.epochs or recipe.epochs
    batch_size = None if full_batch else args.batch_size or recipe.batch_size
    # fit holds the last rows out (validation_split): the schedule spans the rows trained on
    rows = (
        x.shape[0]
        if args.validation_split is None
        else int(x.shape[0] * (1 - args.validation_split))
    )
    steps_per_epoch = 1 if full_batch else rows // batch_size
    total = args.steps if full_batch else epochs * steps_per_epoch
    schedule = args.schedule or ("constant" if full_batch else recipe.schedule)
    opt_spec = {
        "optimizer": optimizer_name, "lr": args.lr or recipe.lr, "schedule": schedule,
        "clip": args.clip, "weight_decay": args.weight_decay, "ema": args.ema,
        "accumulate": args.accumulate,
    }  # fmt: skip
    model = build_model(spec)
    optimizer = build_optimizer(opt_spec, total, steps_per_epoch)
    mode = f"{args.steps} full-batch steps" if full_batch else f"{epochs} epochs of {batch_size}"
    extras = ", ".join(f"{k} {v:g}" for k, v in opt_spec.items()
                       if k in ("clip", "weight_decay", "ema", "accumulate") and v)  # fmt: skip
    held = f" ({x.shape[0] - rows} held out for validation)" if rows < x.shape[0] else ""
    augmented = "" if recipe.augment is None else f", augmented with {recipe.augment}"
    print(f"model: {model.name}")
    print(f"training: {args.loss}, {optimizer_name} lr {opt_spec['lr']:g} ({schedule}"
          f"{', ' + extras if extras else ''}), {mode}, seed {args.seed}, "
          f"{rows} examples{held}{augmented}")  # fmt: skip
    callbacks: list[nj.callbacks.Callback] = []
    if args.early_stopping is not None:
        callbacks.append(nj.callbacks.EarlyStopping("eval_loss", patience=args.early_stopping,
                                                    restore_best=True))  # fmt: skip
    if args.backup_dir:
        callbacks.append(nj.callbacks.BackupAndRestore(args.backup_dir))
    nj.enable_compilation_cache()
    start = time.perf_counter()
    result = nj.fit(
        model, build_loss(spec), optimizer, x, y, key=jax.random.key(args.seed),
        steps=args.steps, epochs=epochs, batch_size=batch_size, callbacks=callbacks,
        augment=recipe.augment, validation_split=args.validation_split,
        log_every=args.log_every, progress=not args.no_progress, mesh=mesh,
    )  # fmt: skip
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    meta = {"model": spec, "optimizer": opt_spec, "epochs": epochs, "steps": args.steps}
    if result.stopped == "interrupted":
        return _interrupted(args, result, meta)
    h = result.history
    unit = "Iteration" if full_batch else "Epoch"
    index = h["step"] if full_batch else h["epoch"] + 1
    for i in range(len(index)):
        if not full_batch or i % args.log_every == 0 or i == len(index) - 1:
            line = (
                f"{unit} {index[i]}: loss = {h['loss'][i]:.6f}, "
                f"train accuracy = {100 * h['accuracy'][i]:.2f}%"
            )
            if "eval_loss" in h and not full_batch:
                line += (
                    f", validation loss = {h['eval_loss'][i]:.6f}, "
                    f"validation accuracy = {100 * h['eval_accuracy'][i]:.2f}%"
                )
            print(line)
    print(f"training time: {seconds:.1f} s (compilation included)")
    if args.history:
        _write_history(args.history, h)
        print(f"saved the history to {args.history}")
    if args.plot:
        plotting.plot_history(h, args.plot, title=f"{model.name}: {optimizer_name}, {mode}")
        print(f"saved the training curves to {args.plot}")
    params = _eval_params(opt_spec, result.params, result.opt_state)
    report = nj.evaluate(model, params, xt, yt, build_loss(spec), state=result.state, mesh=mesh)
    print(report)
    if result.stopped == "callback":
        print(f"early stopping at epoch {int(h['epoch'][-1]) + 1}: the validation loss was "
              f"best at epoch {int(callbacks[0].best_index)}, whose params are kept")  # fmt: skip
    if args.save:
        nj.save(args.save, result.params, result.opt_state, step=result.step,
                key=jax.random.key(args.seed), meta=meta, state=result.state)  # fmt: skip
        print(f"saved model to {args.save}")
    if args.save_csv:
        nj.save_csv_weights(args.save_csv, result.params)
        print(f"saved CSV weights to {args.save_csv}")
    print(f"test accuracy: {100 * report.accuracy:.2f}%")
    return 0


def _interrupted(args: argparse.Namespace, result: nj.FitResult, meta: dict[str, Any]) -> int:
    """Ctrl-C: save what was reached, say so in one line, exit 130 (128 + SIGINT)."""
    where = []
    if args.backup_dir:
        where.append(f"backup in {args.backup_dir} (rerun the same command to resume)")
    if args.save:
        nj.save(args.save, result.params, result.opt_state, step=result.step,
                key=jax.random.key(args.seed), meta=meta, state=result.state)  # fmt: skip
        where.append(f"model in {args.save}")
    saved = "; saved the " + " and the ".join(where) if where else "; nothing saved"
    print(f"interrupted at step {result.step}{saved}", flush=True)
    return 130


def evaluate_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``nnrs-jax evaluate``: the test report of a model saved by ``train --save``."""
    meta = nj.load_meta(args.load)
    if not meta or "model" not in meta:
        parser.error(f"--load {args.load}: the file has no model description (save it with "
                     "nnrs-jax train --save, or nj.save(..., meta={'model': spec}))")  # fmt: skip
    spec, opt_spec = meta["model"], meta.get("optimizer") or {}
    try:
        model, loss = build_model(spec), build_loss(spec)
        template = jax.eval_shape(model.init, jax.random.key(0))
        opt_template = None
        if opt_spec.get("ema"):
            opt_template = jax.eval_shape(build_optimizer(opt_spec, 1, 1).init, template)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"--load {args.load}: the saved description is not valid: {error}"
        ) from None
    state_template = jax.eval_shape(model.init_state)
    ckpt = nj.load(args.load, params=template, opt_state=opt_template, state=state_template)
    params = _eval_params(opt_spec, ckpt.params, ckpt.opt_state)
    xt, yt = load_data(args, "test", flatten=spec.get("kind", "mlp") == "mlp")
    report = nj.evaluate(model, params, xt, yt, loss, state=ckpt.state)
    print(f"model: {model.name}")
    print(report)
    print(f"test accuracy: {100 * report.accuracy:.2f}%")
    return 0


def _write_history(path: str, history: dict[str, np.ndarray]) -> None:
    """CSV: ``step`` (updates done before it, as printed) or ``epoch`` (from 1), loss, accuracy."""
    index = ("step", history["step"]) if "step" in history else ("epoch", history["epoch"] + 1)
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{index[0]},loss,accuracy\n")
        for i, loss, accuracy in zip(index[1], history["loss"], history["accuracy"]):
            file.write(f"{int(i)},{float(loss):.9g},{float(accuracy):.9g}\n")
