"""MkDocs hook: fill ``docs/cli.md`` with the ``--help`` of ``nnrs-jax`` and each subcommand.

Generated from the argparse parser at build time, so the page cannot drift from the program;
``tests/test_docs_site.py`` checks it against ``--help``.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-help -->"


def help_texts() -> dict[str, str]:
    """``{"nnrs-jax": top-level help, "nnrs-jax train": …}`` at a fixed width of 100 columns."""
    import os

    os.environ["COLUMNS"] = "100"
    from nnrs_jax.cli import DESCRIPTION
    from nnrs_jax.cli.parser import build_parser

    parser, commands = build_parser(DESCRIPTION)
    texts = {"nnrs-jax": parser.format_help()}
    for name, command in commands.items():
        texts[f"nnrs-jax {name}"] = command.format_help()
    return texts


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace the marker of ``cli.md`` with one section per command."""
    if MARKER not in markdown:
        return markdown
    sections = [
        f"## `{name}`\n\n```text\n{text.rstrip()}\n```\n" for name, text in help_texts().items()
    ]
    return markdown.replace(MARKER, "\n".join(sections))
