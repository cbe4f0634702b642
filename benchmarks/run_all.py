"""Run every benchmark on this host and write its tables as one dated section of markdown.

    python benchmarks/run_all.py                 # every benchmark, full size
    python benchmarks/run_all.py --quick         # tiny sizes: checks that each one runs
    python benchmarks/run_all.py --only cnn,fast --out section.md

Each benchmark runs in a subprocess of its own, one after the other (never two at once: they
would share the cores), and its standard output, the tables, goes into a section headed by
the date and the host (`harness.cpu_model`): the form of the sections of
``benchmarks/RESULTS.md``. The section is printed and, with ``--out``, written to a file; a
failed benchmark is reported in the section with the end of its error output, and the others
still run. The exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

from harness import cpu_model

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "mlp": ("The MLP workloads (`bench.py`)", ["bench.py", "--repeats", "3"], ["--quick"]),
    "cnn": ("The CNN epoch (`bench_cnn.py`)", ["bench_cnn.py", "--examples", "12800"],
            ["--quick"]),
    "memory": ("The seed run's peak memory as a user runs it (`bench_memory.py`)",
               ["bench_memory.py"], ["--repeats", "1", "--steps", "3"]),
    "vmap": ("8 models against one (`bench_vmap.py`)", ["bench_vmap.py", "--repeats", "9"],
             ["--quick"]),
    "fast": ("The fast recipe against its PyTorch twin (`bench_fast.py`)",
             ["bench_fast.py", "--repeats", "2"], None),
    "autotune": ("conv2d's policies in the step, and the measured choice (`bench_autotune.py`)",
                 ["bench_autotune.py"], ["--examples", "1280", "--epochs", "1", "--only", "fast"]),
    "sequences": ("The sequence layers (`bench_sequences.py`)", ["bench_sequences.py"],
                  ["--quick"]),
    "parallel": ("Data parallel over devices (`bench_parallel.py`)", ["bench_parallel.py"],
                 ["--quick"]),
}  # fmt: skip
"""Name: (title, script and its arguments, the arguments of its quick form or None when it
has none, in which case ``--quick`` skips it)."""


def run(name: str, quick: bool) -> tuple[str, bool]:
    """One benchmark's section body and whether it succeeded."""
    title, command, quick_args = BENCHMARKS[name]
    if quick and quick_args is None:
        return f"### {title}\n\nskipped: it has no quick form\n", True
    args = [command[0], *quick_args] if quick else command
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]], capture_output=True,
                          text=True, cwd=HERE.parent, check=False)  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    head = f"### {title}\n\n`python benchmarks/{' '.join(args)}` ({minutes:.1f} min)\n\n"
    if done.returncode != 0:
        return (
            head + f"FAILED (exit {done.returncode}):\n\n```\n{done.stderr[-2000:]}\n```\n",
            False,
        )
    return head + done.stdout.strip() + "\n", True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks each one runs")
    parser.add_argument("--out", type=Path, help="also write the section to this file")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmarks {unknown}; choose from {list(BENCHMARKS)}")
    today = datetime.date.today().isoformat()
    parts = [f"## {today}, {cpu_model()}{' (quick sizes)' if args.quick else ''}\n"]
    failed = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        body, ok = run(name, args.quick)
        parts.append(body)
        if not ok:
            failed.append(name)
    section = "\n".join(parts)
    print(section)
    if args.out is not None:
        args.out.write_text(section, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
