"""MkDocs hook: show Sphinx cross-reference roles in docstrings (``:func:`name```) as plain
code in the API reference, since mkdocstrings' numpy style renders the role's text literally."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj):(<code>)")


def on_page_content(html: str, **_: object) -> str:
    return ROLE.sub(r"\1", html)
