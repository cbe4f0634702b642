"""Benchmark nnrs_jax against PyTorch and Flax + Optax on the reference MNIST MLP.

The same data (the 60 000 MNIST training images) and the same model (784-64-32-16-10, ELU,
He-normal init, elastic-net penalty on the weights, softmax cross-entropy, Nadam 5e-4) train in
every framework. Each framework runs each workload in its own subprocess, so thread pools and
peak memory (``ru_maxrss`` read as the subprocess ends) stay apart; the tables give the median
over ``--repeats`` subprocesses and each row's ratio to the first row, measured in the same run.

Workloads:
    full        151 full-batch steps (the seed run), compile included, and the steady step.
    epoch       one shuffled mini-batch epoch (batch 128, 468 steps), first and second.
    first_step  the first step's trace + compile + run; nnrs_jax also with the persistent
                compilation cache, cold (empty folder) then warm (a second process).
    vmap        nnrs_jax only: 8 models at once (fit_many, jax.vmap) vs one (fit), 20 steps.

Usage:
    python benchmarks/bench.py [--only nnrs_jax,torch,flax]
        [--workloads full,epoch,first_step,vmap] [--repeats N] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from harness import BATCH, FULL, QUICK, VMAP_MODELS, Settings, cpu_model, load_data, save_data

FRAMEWORKS = ("nnrs_jax", "torch", "flax")
WORKLOADS = ("full", "epoch", "first_step", "vmap")
PACKAGES = ("nnrs-jax", "jax", "jaxlib", "torch", "flax", "optax", "numpy")


class Job(NamedTuple):
    """One table row: a framework running a workload in a subprocess of its own."""

    workload: str
    label: str
    framework: str
    cache: bool = False
    """Turn on the persistent compilation cache, in a folder shared by the run's cache rows."""
    models: int | None = None
    """How many models the ``vmap`` workload trains."""


class Column(NamedTuple):
    key: str
    header: str
    fmt: str


STEADY = Column("steady_ms", "steady ms/step", "{:.1f}")
ACCURACY = Column("accuracy", "train acc", "{:.4f}")

COLUMNS: dict[str, tuple[Column, ...]] = {
    "full": (Column("total_s", "total s (incl. compile)", "{:.2f}"), STEADY, ACCURACY),
    "epoch": (
        Column("first_epoch_s", "1st epoch s (incl. compile)", "{:.2f}"),
        Column("epoch_s", "warm epoch s (median)", "{:.2f}"),
        Column("step_ms", "ms/step (warm)", "{:.2f}"),
        ACCURACY,
    ),
    "first_step": (
        Column("first_step_s", "1st step s (trace+compile+run)", "{:.3f}"),
        Column("second_step_s", "2nd step s", "{:.3f}"),
    ),
    "vmap": (
        Column("total_s", "total s (incl. init, compile)", "{:.2f}"),
        STEADY,
        ACCURACY._replace(header="mean train acc"),
    ),
}
"""What each workload's table shows, before the memory and ratio columns."""

MEMORY = Column("peak_rss_mib", "peak RSS MiB", "{:.0f}")

RATIOS: dict[str, tuple[tuple[str, str], ...]] = {
    "full": (("total_s", "total"), ("steady_ms", "step")),
    "epoch": (("first_epoch_s", "1st epoch"), ("epoch_s", "warm epoch")),
    "first_step": (("first_step_s", "1st step"),),
    "vmap": (("total_s", "total"), ("steady_ms", "step")),
}
"""The columns also given as a ratio to the table's first row, with their short names."""


def jobs(workload: str, frameworks: Sequence[str]) -> list[Job]:
    """The rows of one workload's table, the baseline first."""
    if workload == "vmap":
        if "nnrs_jax" not in frameworks:
            return []
        return [
            Job(workload, "nnrs_jax ×1", "nnrs_jax", models=1),
            Job(workload, f"nnrs_jax ×{VMAP_MODELS} (vmap)", "nnrs_jax", models=VMAP_MODELS),
        ]
    rows = [Job(workload, name, name) for name in frameworks]
    if workload == "epoch" and "flax" in frameworks:
        # Flax written both ways its users write it: a jitted step in a Python loop (the
        # "flax" row) and the whole epoch in one lax.scan, as nnrs_jax runs it.
        rows.append(Job(workload, "flax (lax.scan epoch)", "flax_scan"))
    if workload == "first_step" and "nnrs_jax" in frameworks:
        # Cold before warm: the warm process reads the cache the cold one wrote.
        rows[1:1] = [
            Job(workload, "nnrs_jax + cache (cold)", "nnrs_jax", cache=True),
            Job(workload, "nnrs_jax + cache (warm)", "nnrs_jax", cache=True),
        ]
    return rows


def child(*flags: str, quick: bool) -> dict[str, float]:
    """Run this script with ``flags`` in a fresh interpreter; return the JSON it printed last."""
    command = [sys.executable, str(Path(__file__).resolve()), *flags]
    command += ["--quick"] if quick else []
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


def run_job(job: Job, data: Path, cache_dir: Path, quick: bool) -> dict[str, float]:
    """Run ``job`` in a fresh interpreter and return the measurements its worker printed."""
    flags = ["--worker", job.framework, "--workload", job.workload, "--data", str(data)]
    flags += ["--cache-dir", str(cache_dir)] if job.cache else []
    flags += ["--models", str(job.models)] if job.models is not None else []
    return child(*flags, quick=quick)


def prepare(args: argparse.Namespace) -> None:
    """Data side: load MNIST once, save it for the workers, print how many examples."""
    from nnrs_jax.datasets import mnist

    examples = (QUICK if args.quick else FULL).examples
    x, y = mnist("train")
    x, y = x[:examples], y[:examples]
    save_data(args.data, x, y)
    print(json.dumps({"examples": len(x)}))


def work(args: argparse.Namespace) -> None:
    """Worker side: run one workload of one framework and print its measurements as JSON."""
    module = importlib.import_module(f"bench_{args.worker}")
    options: dict[str, str | int] = {}
    if args.cache_dir is not None:
        options["cache_dir"] = args.cache_dir
    if args.models is not None:
        options["models"] = args.models
    x, y = load_data(args.data)
    result = getattr(module, args.workload)(x, y, QUICK if args.quick else FULL, **options)
    # ru_maxrss counts KiB on Linux and bytes on macOS.
    per_mib = 1 << 20 if sys.platform == "darwin" else 1 << 10
    result[MEMORY.key] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mib
    print(json.dumps(result))


def machine() -> dict[str, str]:
    """CPU, core count, memory, Python, OS and the versions of the packages compared."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{memory:.1f} GiB",
        "python": platform.python_version(),
        "os": platform.platform(),
        **versions,
    }


def titles(settings: Settings, n: int) -> dict[str, str]:
    return {
        "full": f"full: {settings.full_steps} full-batch steps on {n} images",
        "epoch": f"epoch: one shuffled epoch, batch {BATCH} ({n // BATCH} steps, last dropped)",
        "first_step": f"first_step: the first full-batch step on {n} images",
        "vmap": f"vmap: {VMAP_MODELS} models vs one, {settings.vmap_steps} full-batch steps",
    }


def table(workload: str, rows: list[tuple[Job, dict[str, float]]]) -> list[str]:
    """A markdown table of the medians, with ratios to the first row."""
    columns = (*COLUMNS[workload], MEMORY)
    base_label, base = rows[0][0].label, rows[0][1]
    headers = ["", *(c.header for c in columns)]
    headers += [f"{short} vs {base_label}" for _, short in RATIOS[workload]]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for job, values in rows:
        cells = [job.label, *(c.fmt.format(values[c.key]) for c in columns)]
        cells += [f"{values[key] / base[key]:.2f}×" for key, _ in RATIOS[workload]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _subset(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = {name.strip() for name in text.split(",") if name.strip()}
        if not names or not names <= set(allowed):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}"
            )
        # The canonical order puts nnrs_jax first, the baseline of every ratio.
        return [name for name in allowed if name in names]

    return parse


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare nnrs_jax with PyTorch and Flax + Optax on the MNIST reference MLP.",
    )
    parser.add_argument(
        "--only",
        type=_subset(FRAMEWORKS),
        default=list(FRAMEWORKS),
        help="frameworks to run (default: all)",
    )
    parser.add_argument(
        "--workloads",
        type=_subset(WORKLOADS),
        default=list(WORKLOADS),
        help="workloads to run (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=1,
        help="subprocesses per row; the tables show medians (default: 1)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, to check that everything runs; the numbers mean nothing",
    )
    for worker_flag in ("--worker", "--workload", "--cache-dir"):
        parser.add_argument(worker_flag, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(
    plan: Sequence[Job], scratch: Path, repeats: int, quick: bool
) -> dict[Job, list[dict[str, float]]]:
    """Every job's measurements, one per repeat, each from a fresh subprocess."""
    runs: dict[Job, list[dict[str, float]]] = {job: [] for job in plan}
    for repeat in range(repeats):
        # Repeats interleave, so that a busy machine's noise spreads over every row alike.
        cache_dir = Path(tempfile.mkdtemp(prefix="cache_", dir=scratch))
        for job in plan:
            result = run_job(job, scratch, cache_dir, quick)
            runs[job].append(result)
            print(
                f"[{repeat + 1}/{repeats}] {job.workload} / {job.label}: {result}", file=sys.stderr
            )
    return runs


def markdown(
    info: dict[str, str],
    names: dict[str, str],
    plan: Sequence[Job],
    medians: dict[Job, dict[str, float]],
    repeats: int,
) -> str:
    """The machine, then one table per workload."""
    lines = [
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM",
        f"- Python {info['python']} on {info['os']}",
        "- " + ", ".join(f"{p} {info[p]}" for p in PACKAGES),
        f"- medians over {repeats} run(s) per row, each in its own subprocess",
    ]
    for workload, title in names.items():
        rows = [(job, medians[job]) for job in plan if job.workload == workload]
        if rows:
            lines += ["", f"### {title}", "", *table(workload, rows)]
        if rows and workload == "vmap":
            lines += ["", f"Target: {VMAP_MODELS} models take at most 3× the step time of one."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        work(args)
        return
    if args.prepare:
        prepare(args)
        return
    plan = [job for workload in args.workloads for job in jobs(workload, args.only)]
    # Even loading the data happens in a subprocess: a child's ru_maxrss starts from its
    # parent's peak, so this process stays small.
    with tempfile.TemporaryDirectory(prefix="nnrs_jax_bench_") as scratch:
        examples = int(child("--prepare", "--data", scratch, quick=args.quick)["examples"])
        runs = measure(plan, Path(scratch), args.repeats, args.quick)
    medians = {
        job: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for job, rs in runs.items()
    }
    settings = QUICK if args.quick else FULL
    info = machine()
    print(markdown(info, titles(settings, examples), plan, medians, args.repeats))
    if args.json is not None:
        results = [
            {
                "workload": job.workload,
                "label": job.label,
                "runs": runs[job],
                "median": medians[job],
            }
            for job in plan
        ]
        report = {"machine": info, "settings": settings._asdict(), "repeats": args.repeats}
        args.json.write_text(json.dumps({**report, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
