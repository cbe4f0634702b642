"""The documentation site: `mkdocs build --strict` succeeds, every public name has an anchor in
the API reference, no internal link is broken, the command-line page is the parser's own
``--help``, and the code blocks of the guides run against the real API (real MNIST)."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from helpers import fenced_blocks

import nnrs_jax as nj

ROOT = Path(__file__).resolve().parents[1]
MODULES = [nj, nj.optim, nj.schedules, nj.datasets, nj.parallel, nj.recipes, nj.callbacks,
           nj.augment, nj.autotune]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _pages(site: Path) -> dict[Path, str]:
    return {page: page.read_text() for page in site.rglob("*.html")}


def test_every_public_name_has_an_anchor(site):
    ids = set()
    for text in _pages(site / "api").values():
        ids.update(re.findall(r'id="(nnrs_jax\.[\w.]+)"', text))
    leaves = {anchor.rsplit(".", 1)[-1] for anchor in ids}
    missing = []
    for module in MODULES:
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            if qualified not in ids and f"nnrs_jax.{name}" not in ids and name not in leaves:
                missing.append(qualified)
    assert not missing, f"no anchor in the API reference for {missing}"


def test_no_internal_link_is_broken(site):
    pages = _pages(site)
    ids = {page: set(re.findall(r'id="([^"]+)"', text)) for page, text in pages.items()}
    broken = []
    for page, text in pages.items():
        if page.name == "404.html":  # absolute links: the page is served from any path
            continue
        for href in re.findall(r'href="([^"]+)"', text):
            parts = urlsplit(html.unescape(href))
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {href}")
            elif parts.fragment and unquote(parts.fragment) not in ids.get(
                target, {parts.fragment}
            ):
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


def test_the_command_line_page_is_the_parsers_help(site):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        from cli_reference import help_texts
    finally:
        sys.path.pop(0)
    text = html.unescape(re.sub(r"<[^>]+>", "", (site / "cli" / "index.html").read_text()))
    for name, help_text in help_texts().items():
        assert help_text.rstrip() in text, f"{name} --help differs from the page"
    done = subprocess.run(
        [sys.executable, "-m", "nnrs_jax", "train", "--help"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    assert done.stdout.rstrip().replace("python -m nnrs_jax", "nnrs-jax") in text


def test_the_notebooks_are_rendered_with_their_figures(site):
    for name in ("01_quickstart", "02_gradients", "03_optimizers", "04_cnn"):
        page = (site / "notebooks" / name / "index.html").read_text()
        assert "<img" in page and "data:image/png;base64" in page, name


@pytest.mark.parametrize(
    "guide",
    [
        "index.md",
        "getting_started.md",
        "optimizers.md",
        "training.md",
        "scaling.md",
        "sequences.md",
    ],
)
def test_the_guides_code_runs(guide, mnist_train, capsys):
    del mnist_train  # the guides read MNIST from NNRS_JAX_DATA
    blocks = fenced_blocks(ROOT / "docs" / guide, "python")
    assert blocks
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/{guide}:block{i}", "exec"), namespace)
    if guide in {"index.md", "getting_started.md", "training.md", "scaling.md", "sequences.md"}:
        assert namespace["result"].history["accuracy"][-1] > 0.9


def test_the_design_notes_code_runs(mnist_train, mnist_test):
    """docs/design.md: the complete user layer, and the hand-driven loop, given its context (a
    small CNN on 1024 real training images, 10 epochs)."""
    blocks = fenced_blocks(ROOT / "docs" / "design.md", "python")
    assert len(blocks) == 2
    namespace: dict = {}
    exec(compile(blocks[0], "docs/design.md:block0", "exec"), namespace)
    assert namespace["scale"](16) == namespace["scale"](16)
    x, y = (np.asarray(a)[:1024] for a in mnist_train)
    xt, yt = (np.asarray(a)[:512] for a in mnist_test)
    model = nj.serial(nj.conv2d(1, 4, 3, stride=2), nj.relu(), nj.flatten(),
                      nj.dense(13 * 13 * 4, 10))  # fmt: skip
    context = {"model": model, "opt": nj.adam(3e-3), "x": x.reshape(-1, 28, 28, 1),
               "y": y, "xt": xt.reshape(-1, 28, 28, 1), "yt": yt}  # fmt: skip
    namespace.update(context)
    exec(compile(blocks[1], "docs/design.md:block1", "exec"), namespace)
    assert int(namespace["ts"].step) == 10 * (1024 // 128)


def test_the_recipe_page_code_reaches_its_claim(mnist_train, capsys):
    """docs/recipe.md's snippet is the default recipe, whole: 12 epochs on all of MNIST."""
    del mnist_train
    (block,) = fenced_blocks(ROOT / "docs" / "recipe.md", "python")
    exec(compile(block, "docs/recipe.md:block0", "exec"), {})
    assert float(capsys.readouterr().out.strip()) >= 0.985


def test_the_ranking_page_code_runs(mnist_train, monkeypatch, capsys):
    """docs/ranking.md's snippet against the real API, with a tiny protocol in place of
    ``ranking.FULL`` (the full protocol takes an hour; its results are on the page)."""
    del mnist_train
    from nnrs_jax import ranking

    tiny = ranking.Protocol(steps=4, batch_size=50, seeds=2, validation_size=100, train_size=200)
    monkeypatch.setattr(ranking, "FULL", tiny)
    (block,) = fenced_blocks(ROOT / "docs" / "ranking.md", "python")
    exec(compile(block, "docs/ranking.md:block0", "exec"), {})
    assert "optimizers" in capsys.readouterr().out
