"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel, with small settings.

Each notebook's first code cell (tagged ``parameters``) is replaced by smaller settings; the
notebook then executes in the ``python3`` kernel with ``notebooks/`` as working directory, and
the printed results are parsed and checked.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from nnrs_jax.datasets import mnist

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (dev extra)")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_gradients.ipynb", "03_optimizers.ipynb"]
SMALL = {
    "01_quickstart.ipynb": "STEPS = 11\nTRAIN_SIZE = 2_000\nSEED = 0\n",
    "02_gradients.ipynb": "BATCH = 5\nSEED = 1\n",
    "03_optimizers.ipynb": "STEPS = 5\nTRAIN_SIZE = 1_000\nSEED = 0\n",
}
OPTIMIZERS = ["SGD", "Momentum", "Nesterov", "RMSProp", "Adam", "Nadam", "AdaMax"]
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


def _read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged 'parameters', got {len(cells)}"
    return cells[0]


def _assigned(source: str) -> set[str]:
    tree = ast.parse(source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


@pytest.fixture(scope="module")
def mnist_present() -> None:
    try:
        mnist("train", download=False, progress=False)
        mnist("test", download=False, progress=False)
    except FileNotFoundError as error:
        first_line = str(error).splitlines()[0]
        pytest.skip(f"{first_line}; set NNRS_JAX_DATA to a folder holding the MNIST files")


def run(name: str) -> str:
    """Execute the notebook with the small parameters; return everything it printed."""
    nb = _read(name)
    _parameters_cell(nb).source = SMALL[name]
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, errors
    return "".join(
        out.text for out in outputs if out.output_type == "stream" and out.name == "stdout"
    )


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0] is _parameters_cell(nb), "the parameters cell must be the first code cell"
    # The small settings must override exactly the names the notebook defines.
    assert _assigned(code[0].source) == _assigned(SMALL[name])


def test_quickstart(mnist_present: None) -> None:
    text = run("01_quickstart.ipynb")

    iterations = re.findall(rf"Iteration (\d+): loss = ({NUMBER}), accuracy = ({NUMBER})%", text)
    assert [int(i) for i, _, _ in iterations] == [0, 10]
    losses = [float(loss) for _, loss, _ in iterations]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[1] < losses[0]

    assert "Confusion Matrix:" in text
    classes = re.findall(r"Class (\d+): TP = (\d+), FP = (\d+), FN = (\d+), TN = (\d+)", text)
    assert [int(c[0]) for c in classes] == list(range(10))
    assert all(sum(int(v) for v in c[1:]) == 10_000 for c in classes)
    assert sum(int(c[1]) + int(c[3]) for c in classes) == 10_000
    accuracy = re.search(rf"^Accuracy: ({NUMBER})%$", text, re.MULTILINE)
    assert accuracy is not None and 0 <= float(accuracy.group(1)) <= 100
    assert float(accuracy.group(1)) == pytest.approx(
        100 * sum(int(c[1]) for c in classes) / 10_000, abs=0.005
    )

    assert "restored model gives identical outputs: True" in text


def test_gradients() -> None:
    text = run("02_gradients.ipynb")
    table = text[text.index("max relative error") :]
    rows = dict(re.findall(rf"^(\S[^\n]*?)\s+({NUMBER})$", table, re.MULTILINE))
    expected = [
        "dense",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "tanh",
        "sigmoid",
        "softmax",
        "cross_entropy",
        "mse",
        "softmax_mse",
        "model + cross_entropy",
        "model + mse",
        "model + softmax_mse",
    ]
    assert set(expected) <= set(rows), rows
    for name in expected:
        assert 0 <= float(rows[name]) < 1e-10, (name, rows[name])


def test_optimizers(mnist_present: None) -> None:
    text = run("03_optimizers.ipynb")
    pattern = rf"^(\w+)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})%\s+({NUMBER})%$"
    rows = {row[0]: [float(v) for v in row[1:]] for row in re.findall(pattern, text, re.MULTILINE)}
    assert list(rows) == OPTIMIZERS
    initial = {values[1] for values in rows.values()}
    assert len(initial) == 1, "every run must start from the same weights"
    for name, (lr, start, final, train_acc, test_acc) in rows.items():
        assert lr > 0
        assert math.isfinite(final) and final < start, (name, start, final)
        assert 0 <= train_acc <= 100 and 0 <= test_acc <= 100
