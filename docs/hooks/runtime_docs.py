"""MkDocs hook: ``<!-- docstring: nnrs_jax.NAME -->`` becomes a heading and that object's runtime
docstring.

For values whose documentation lives on the object, not in the source beside it: each loss is
an instance of its own `Loss` subclass carrying its formula (what ``help(nj.mse)`` shows), which
static analysis cannot see.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

MARKER = re.compile(r"<!-- docstring: ([\w.]+) -->")


def _section(path: str) -> str:
    module_name, _, name = path.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    doc = inspect.getdoc(obj) or ""
    return f"### `{name}` {{ #{path} }}\n\n{doc}\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace every marker with the documented object's section."""
    return MARKER.sub(lambda m: _section(m.group(1)), markdown)
