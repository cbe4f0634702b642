"""Execute the notebooks at full size and save them with their outputs and figures.

Usage (from anywhere; MNIST as for ``nnrs-jax train``, e.g. ``NNRS_JAX_DATA=...``)::

    python notebooks/run.py                      # every notebook in this folder
    python notebooks/run.py 01_quickstart.ipynb  # just these

Each notebook runs top to bottom in a fresh ``python3`` Jupyter kernel (nbclient) with this
folder as working directory and its committed parameters (the cell tagged ``parameters``), then
is written back in place, outputs included. Needs the ``notebooks`` extra:
``pip install -e '.[notebooks]'``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int) -> None:
    """Run the notebook at ``path`` in a fresh kernel and save it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first failure
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all here)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    paths = [HERE / name for name in args.names] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        print(f"{path.name} ...", flush=True)
        execute(path, args.timeout)
        print(f"{path.name}: done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
