"""The real console script in a subprocess, on small settings."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent / "nnrs-jax"
SCRIPT = [str(BIN)] if BIN.exists() else [shutil.which("nnrs-jax") or "nnrs-jax"]
ACCURACY = re.compile(r"test accuracy: (\d+\.\d\d)%\n\Z")


def run(*args: str, tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NNRS_JAX_CACHE": str(tmp_path / "jit")} if tmp_path else None
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def needs_mnist(mnist_test):
    return mnist_test


def test_train_full_batch_save_and_evaluate(needs_mnist, tmp_path):
    npz, csv = tmp_path / "model.npz", tmp_path / "csv"
    done = run("train", "--arch", "784-16-10", "--activation", "elu", "--optimizer", "nadam",
               "--lr", "0.01", "--steps", "12", "--regularizer", "elastic_net:1e-4,1e-4",
               "--no-progress", "--save", str(npz), "--save-csv", str(csv),
               tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Confusion Matrix:" in done.stdout and "Iteration 10: loss = " in done.stdout
    accuracy = float(ACCURACY.search(done.stdout).group(1))
    assert 50 < accuracy <= 100
    assert sorted(p.name for p in csv.iterdir()) == ["b0.csv", "b1.csv", "w0.csv", "w1.csv"]
    again = run("evaluate", "--load", str(npz), tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert float(ACCURACY.search(again.stdout).group(1)) == accuracy


def test_composed_optimizer_flags_train_save_and_evaluate_with_the_average(needs_mnist, tmp_path):
    """adamw + clip + ema + accumulate: the saved file evaluates to the same (EMA) accuracy."""
    npz = tmp_path / "model.npz"
    done = run("train", "--arch", "784-16-10", "--optimizer", "adamw", "--weight-decay", "1e-4",
               "--clip", "1.0", "--ema", "0.9", "--accumulate", "2", "--epochs", "1",
               "--batch-size", "500", "--lr", "0.01", "--no-progress", "--save", str(npz),
               tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "clip 1, weight_decay 0.0001, ema 0.9, accumulate 2" in done.stdout
    accuracy = float(ACCURACY.search(done.stdout).group(1))
    assert 60 < accuracy <= 100
    again = run("evaluate", "--load", str(npz), tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert float(ACCURACY.search(again.stdout).group(1)) == accuracy
    wrong = run("train", "--weight-decay", "1e-4", "--steps", "1", tmp_path=tmp_path)
    assert wrong.returncode == 2 and "--weight-decay goes with --optimizer adamw" in wrong.stderr


def test_module_entry_point_minibatch_with_progress(needs_mnist, tmp_path):
    env = {**os.environ, "NNRS_JAX_CACHE": str(tmp_path / "jit")}
    done = subprocess.run(
        [sys.executable, "-m", "nnrs_jax", "train", "--arch", "784-32-10", "--epochs", "1",
         "--batch-size", "1000", "--schedule", "cosine"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Epoch 1: loss = " in done.stdout and ACCURACY.search(done.stdout)
    assert "epoch" in done.stderr  # the progress bar


# A reproduce row: number, config, nn-rs %, ours %, ours − nn-rs, within the tolerance.
ROW = re.compile(
    r" *(\d+) \| (.+?) +\| +(\d+\.\d\d) \| +(\d+\.\d\d) +\| +([-+]\d+\.\d\d) \| (yes|NO)"
)


def _rows(stdout: str) -> list[tuple[int, str, float, float, float, str]]:
    found = [ROW.fullmatch(line) for line in stdout.splitlines()]
    return [(int(m[1]), m[2], float(m[3]), float(m[4]), float(m[5]), m[6]) for m in found if m]


def test_reproduce_one_row(needs_mnist, tmp_path):
    done = run("reproduce", "--rows", "2", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [c.strip() for c in lines[0].split("|")] == [
        "row", "config", "nn-rs %", "ours %", "diff", "within 1.5",
    ]  # fmt: skip
    [(row, config, nnrs, ours, diff, within)] = _rows(done.stdout)
    assert (row, config, nnrs) == (2, "784-16-10 He ELU Nadam 0.01", 94.43)
    # What the run must achieve: the nn-rs table's accuracy less the default tolerance.
    assert ours >= 94.43 - 1.5 and within == "yes"
    assert diff == pytest.approx(ours - nnrs, abs=0.011)
    assert lines[3].startswith("1/1 rows within 1.5 points of the nn-rs table or better (151 ")
    assert len(lines) == 4


def _write_idx(folder: Path, prefix: str, n: int, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    head = np.array([2051, n, 28, 28], ">u4").tobytes()
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(head + pixels.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        np.array([2049, n], ">u4").tobytes() + labels.tobytes()
    )


def test_reproduce_exits_1_and_names_the_rows_that_missed(tmp_path):
    # Random images with random labels: no model gets near nn-rs's 94 %, so both rows must
    # miss with the default tolerance and pass with a tolerance of 100 points.
    data = tmp_path / "noise"
    data.mkdir()
    rng = np.random.default_rng(0)
    _write_idx(data, "train", 200, rng)
    _write_idx(data, "t10k", 200, rng)
    flags = ["reproduce", "--rows", "2,8", "--data-dir", str(data), "--no-verify"]
    done = run(*flags, tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr
    rows = _rows(done.stdout)
    assert [(r[0], r[2], r[5]) for r in rows] == [(2, 94.43, "NO"), (8, 94.00, "NO")]
    assert all(r[3] < 50 for r in rows)
    assert "0/2 rows within 1.5 points" in done.stdout
    assert f"missed: row 2 (784-16-10 He ELU Nadam 0.01): {rows[0][3]:.2f} < 94.43 - 1.5" in (
        done.stdout
    )
    assert "missed: row 8 (784-16-10 He ELU Nadam 0.01 (second run))" in done.stdout
    assert "2 of 2 rows missed the tolerance of 1.5 points" in done.stderr
    assert "Traceback" not in done.stderr

    lenient = run(*flags, "--tolerance", "100", tmp_path=tmp_path)
    assert lenient.returncode == 0, lenient.stderr
    assert [r[5] for r in _rows(lenient.stdout)] == ["yes", "yes"]
    assert "2/2 rows within 100 points" in lenient.stdout and "missed" not in lenient.stdout


def _write_subset(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Real digits in MNIST's idx format: ``images`` float in [0, 1], ``(n, 784)``."""
    pixels = np.rint(255 * np.asarray(images)).astype(np.uint8)
    head = np.array([2051, len(pixels), 28, 28], ">u4").tobytes()
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(head + pixels.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        np.array([2049, len(labels)], ">u4").tobytes() + labels.astype(np.uint8).tobytes()
    )


@pytest.mark.parametrize(
    ("model", "least"), [("cnn", 70), ("fast", 70), ("lstm", 40), ("transformer", 30)]
)
def test_image_recipes_train_save_and_evaluate(model, least, mnist_train, mnist_test, tmp_path):
    """`--model M` on 2 048 real digits: the saved model evaluates to the accuracy it printed.

    Chance is 10 %; after 32 steps the CNN is at about 85 %, the LSTM at about 65 % and the
    transformer (warming up over the first of the two epochs) at about 50 %; the fast CNN
    (batch 64, 64 steps) at about 90 %."""
    data = tmp_path / "digits"
    data.mkdir()
    (x, y), (xt, yt) = mnist_train, mnist_test
    _write_subset(data, "train", x[:2048], y[:2048])
    _write_subset(data, "t10k", xt[:1000], yt[:1000])
    npz = tmp_path / f"{model}.npz"
    flags = ["--data-dir", str(data), "--no-verify"]
    done = run("train", "--model", model, "--epochs", "2", "--no-progress", "--save", str(npz),
               *flags, tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Epoch 2: loss = " in done.stdout
    accuracy = float(ACCURACY.search(done.stdout).group(1))
    assert least < accuracy <= 100
    again = run("evaluate", "--load", str(npz), *flags, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert float(ACCURACY.search(again.stdout).group(1)) == accuracy


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--arch", "784-x-10"], "--arch"),
        (["train", "--steps", "3", "--epochs", "2"], "not allowed with"),
        (["train", "--steps", "3", "--batch-size", "5"], "--batch-size"),
        (["train", "--regularizer", "l3:1"], "--regularizer"),
        (["train", "--optimizer", "adagrad"], "invalid choice"),
        (["train", "--regularizer", "l2:inf"], "--regularizer"),
        (["train", "--regularizer", "elastic_net:1e-4,-1"], "--regularizer"),
        (["reproduce", "--rows", "9"], "--rows"),
        (["reproduce", "--tolerance", "-1"], "--tolerance"),
        (["reproduce", "--tolerance", "nan"], "--tolerance"),
        (["evaluate"], "--load"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_usage(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr and message in done.stderr


def test_corrupt_data_is_a_clear_error(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03 not really an idx file")
    done = run("train", "--data-dir", str(tmp_path), "--steps", "1")
    assert done.returncode == 1
    assert "checksum" in done.stderr and "train-" in done.stderr
    assert "Traceback" not in done.stderr


def test_ci_runs_exactly_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().splitlines()
    commands = [line for line in readme if ".venv/bin/pytest" in line and "&&" in line]
    assert len(commands) == 1, commands
    assert (root / ".ci" / "run").read_text().splitlines()[-1] == commands[0]
    both = ("pytest -n auto --maxprocesses 4 &&", "pytest -n auto --maxprocesses 4 --float32")
    for step in ("ruff check .", "ruff format --check .", *both):
        assert step in commands[0]


def test_ctrl_c_saves_says_one_line_exits_130_and_the_same_command_resumes(needs_mnist, tmp_path):
    """SIGINT once the first backup is written; the rerun finishes like a straight run."""
    backup, npz = tmp_path / "backup", tmp_path / "model.npz"
    args = ["train", "--arch", "784-32-10", "--epochs", "12", "--batch-size", "1000",
            "--no-progress", "--backup-dir", str(backup), "--save", str(npz)]  # fmt: skip
    env = {**os.environ, "NNRS_JAX_CACHE": str(tmp_path / "jit")}
    process = subprocess.Popen([*SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (backup / "backup.npz").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no backup was written"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = out.strip().splitlines()[-1]
    step = int(re.match(r"interrupted at step (\d+); saved the backup in ", last).group(1))
    assert 0 < step < 12 * 60 and step % 60 == 0
    assert f"and the model in {npz}" in last
    assert (backup / "backup.npz").is_file() and npz.is_file()
    resumed = run(*args, tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not backup.exists()
    straight = run(*args[:-4], tmp_path=tmp_path)
    assert straight.returncode == 0, straight.stderr
    tail = [line for line in resumed.stdout.splitlines() if line.startswith("Epoch 12:")]
    assert tail and tail == [line for line in straight.stdout.splitlines()
                             if line.startswith("Epoch 12:")]  # fmt: skip
    assert ACCURACY.search(resumed.stdout).group(1) == ACCURACY.search(straight.stdout).group(1)


def test_validation_split_and_early_stopping_flags(needs_mnist, tmp_path):
    done = run("train", "--arch", "784-32-10", "--epochs", "2", "--batch-size", "1000",
               "--validation-split", "0.1", "--early-stopping", "3", "--no-progress",
               tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"Epoch 2: loss = [\d.]+, train accuracy = [\d.]+%, validation loss = "
                     r"[\d.]+, validation accuracy = [\d.]+%", done.stdout)  # fmt: skip
    lonely = run("train", "--early-stopping", "3", "--epochs", "1", tmp_path=tmp_path)
    assert lonely.returncode == 2 and "add --validation-split" in lonely.stderr
    bad = run("train", "--validation-split", "1.5", tmp_path=tmp_path)
    assert bad.returncode == 2 and "fraction in (0, 1)" in bad.stderr


def _parsers():
    from nnrs_jax.cli import DESCRIPTION
    from nnrs_jax.cli.parser import build_parser

    parser, commands = build_parser(DESCRIPTION)
    return parser, commands


def test_every_flag_of_every_command_has_help():
    parser, commands = _parsers()
    for name, command in {"nnrs-jax": parser, **commands}.items():
        missing = [a.dest for a in command._actions if not (a.help and a.help.strip())]
        assert missing == [], f"{name}: flags without help: {missing}"
        for action in command._actions:  # the subcommands listed in the top-level help
            for choice in getattr(action, "_choices_actions", []):
                assert choice.help and choice.help.strip(), f"{name}: {choice.dest} has no help"


def test_help_is_plain_text_and_calls_the_table_the_nnrs_table():
    """No reST markup in what --help prints; "seed" only ever means a random seed."""
    parser, commands = _parsers()
    for name, command in {"nnrs-jax": parser, **commands}.items():
        text = command.format_help()
        assert "``" not in text and "`" not in text, f"{name} --help shows markup"
        for line in re.findall(r"[^.;]*\bseed[^.;]*", text.replace("\n", " ")):
            assert "random" in line or "--seed" in line or "seeds" in line, (name, line)
    assert "nn-rs table" in commands["reproduce"].format_help()


def test_the_description_shown_by_help_has_no_double_backticks():
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout and "nn-rs table" in done.stdout
    assert run("train", "--help").stdout.count("``") == 0


def test_the_default_flags_are_the_mlp_recipe():
    """`nnrs-jax train`'s defaults and `nj.recipes` are one recipe: one spec, same model."""
    import jax

    import nnrs_jax as nj
    from nnrs_jax.cli.train import model_spec
    from nnrs_jax.specs import build_model

    parser, _ = _parsers()
    args = parser.parse_args(["train"])
    spec = model_spec(args)
    assert spec == nj.recipes.MLP_MODEL
    assert spec["arch"] is not nj.recipes.MLP_MODEL["arch"]  # saved metadata is a copy
    flags, recipe = build_model(spec), nj.recipes.mlp()
    assert flags.name == recipe.name
    key = jax.random.key(3)
    a, b = flags.init(key), recipe.init(key)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(flags.apply(a, x)), np.asarray(recipe.apply(b, x)))
    assert float(flags.penalty(a)[0]) == float(recipe.penalty(b)[0])
    # The training settings left unset on the command line come from the recipe of --model.
    for flag in ("optimizer", "lr", "schedule", "epochs", "batch_size"):
        assert getattr(args, flag) is None
    assert model_spec(parser.parse_args(["train", "--model", "cnn"])) == {
        "kind": "cnn", "loss": nj.recipes.MLP_MODEL["loss"],
    }  # fmt: skip


def _per_model(setting: str, lead: str = "") -> str:
    """The help text of a training default: the MLP's, then each recipe's that differs."""
    import nnrs_jax as nj

    mlp = getattr(nj.recipes.MLP, setting)
    parts = [f"{mlp:g}"] + [
        f"{name} {getattr(recipe, setting):g}"
        for name, (_, recipe) in nj.recipes.RECIPES.items()
        if getattr(recipe, setting) != mlp
    ]
    return f"({lead}{'; '.join(parts)})"


def test_the_help_text_shows_the_recipe_defaults():
    import nnrs_jax as nj
    from nnrs_jax.specs import format_arch

    _, commands = _parsers()
    text = " ".join(commands["train"].format_help().split())
    m, mlp = nj.recipes.MLP_MODEL, nj.recipes.MLP
    shown = [
        f"(default {format_arch(m['arch'])})", f"({m['activation']})", f"({m['init']})",
        f"({m['regularizer']})", f"({m['loss']})", f"(default {mlp.optimizer})",
        _per_model("lr", "default "), _per_model("epochs"), _per_model("batch_size"),
    ]  # fmt: skip
    assert [s for s in shown if s not in text] == []


def test_evaluate_names_an_invalid_saved_description(tmp_path):
    import jax

    import nnrs_jax as nj

    path = tmp_path / "odd.npz"
    params = nj.dense(4, 2).init(jax.random.key(0))
    nj.save(path, params, meta={"model": {"arch": [4, 2], "activation": "swish", "init": "he"}})
    done = run("evaluate", "--load", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"--load {path}: the saved description is not valid: build_model: " in done.stderr
    assert "spec['activation'] must be one of" in done.stderr and "got 'swish'" in done.stderr
