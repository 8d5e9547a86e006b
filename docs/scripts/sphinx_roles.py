"""Griffe extension: render the reStructuredText markup of numpydoc docstrings for MkDocs.

The docstrings follow numpydoc, which writes cross-references as
``:class:`~stainstyle.base.X```, ``:func:`make_tiles``` and so on, and citations as
``.. [1] Author, ...``. MkDocs interprets neither; this extension turns each role into inline
code of the name (the last component when the target starts with ``~``) and each citation
label into ``[1]``, so the API reference reads ``X`` instead of the raw markup. The docstring
files are not changed.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")
_CITATION = re.compile(r"^(\s*)\.\. \[(\w+)\]", re.MULTILINE)


def _as_code(match: re.Match) -> str:
    """Inline code of a role's target: its last component for ``~target``."""
    target = match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


def sphinx_to_markdown(text: str) -> str:
    """Replace Sphinx cross-reference roles by inline code and citation labels by ``[n]``.

    Parameters
    ----------
    text : str
        Docstring text.

    Returns
    -------
    str
        The text with ``:role:`target``` replaced by ```target``` and ``.. [n]`` by ``[n]``.
    """
    return _CITATION.sub(r"\1[\2]", _ROLE.sub(_as_code, text))


class SphinxRoles(Extension):
    """Rewrite the markup of every loaded docstring (see :func:`sphinx_to_markdown`)."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        """Rewrite the docstring of one loaded object."""
        if obj.docstring is not None:
            obj.docstring.value = sphinx_to_markdown(obj.docstring.value)
