"""The ``nnrs-jax rank`` command: a quick run on MNIST, and its flags and help."""

from __future__ import annotations

import re

import pytest

from nnrs_jax import cli


@pytest.mark.slow
def test_rank_command_quick(mnist_train, mnist_test, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NNRS_JAX_CACHE", str(tmp_path / "jit"))
    plot = tmp_path / "rank.png"
    assert cli.main(["rank", "activations", "--quick", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    row = r"^\| (\S+(?: ReLU)?) +\| ([\d.e-]+)\*? +\| +([\d.]+) ± ([\d.]+) +\| +(\d) \|$"
    rows = re.findall(row, out, re.M)
    assert [r[0] for r in rows] == ["SELU", "ELU", "leaky ReLU", "ReLU", "tanh", "logistic"]
    means = {name: float(mean) for name, _, mean, _, _ in rows}
    # 40 Adam steps of 100 on 2000 images: every activation learns (chance is 10 %).
    assert min(means.values()) > 60, means
    ranks = {name: int(rank) for name, _, _, _, rank in rows}
    assert ranks == {n: 1 + sum(m > means[n] for m in means.values()) for n in means}
    verdicts = re.findall(r"^\| (.+?) +\| +[-+][\d.]+ \| +[\d.]+ \| (.+?) +\|$", out, re.M)
    assert [v[0] for v in verdicts] == [
        "SELU > ELU", "ELU > leaky ReLU", "leaky ReLU > ReLU", "ReLU > tanh", "tanh > logistic",
    ]  # fmt: skip
    assert {v[1] for v in verdicts} <= {"holds", "reversed", "not distinguishable"}
    held = sum(v[1] == "holds" for v in verdicts)
    assert f"activations: {held} of 5 claimed orderings hold" in out
    assert "alpha = 0.05, 3 seeds per variant" in out
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_rank_command_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rank", "activations", "--seeds", "1"])
    assert exit_info.value.code == 2
    assert "--seeds: must be >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["rank", "losses"])
    assert "invalid choice: 'losses'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rank", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("validation", "never the test set", "500 updates per run", "10 seeds",
                   "Welch t-test", "--quick", "--plot", "LeCun init for SELU"):  # fmt: skip
        assert phrase in " ".join(text.split()), phrase
