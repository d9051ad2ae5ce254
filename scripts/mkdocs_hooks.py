"""mkdocs hook: drop the Sphinx role prefixes (``:class:``, ``:func:``, ...) that the package's docstrings use
before a code span, which mkdocstrings would otherwise print literally in the API reference."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code)")


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub("", html)
