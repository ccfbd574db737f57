"""A griffe extension for the site's API pages: Sphinx roles in docstrings as Markdown code.

The docstrings use reStructuredText roles (``:func:`~attnzoo.functional.attention```), which
``help()`` and IDEs read; mkdocstrings renders Markdown, where a role shows as raw text. This
extension rewrites each role as inline code before rendering: ``:mod:`a.b``` as ```a.b```, and
``:class:`~a.b.C``` (the tilde form) as ```C```, as Sphinx does. Configured in ``mkdocs.yml``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite ``:role:`target``` as inline code in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called for every object (module, class, function, attribute)."""
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
