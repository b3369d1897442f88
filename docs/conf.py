"""Sphinx configuration for txlibxl's documentation (built with -W in CI)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "txlibxl"
author = "the txlibxl developers"
copyright = "2026, the txlibxl developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False


# Some modules write their docstrings in epytext, Twisted's convention
# (C{code}, L{link}, @param, @return).  Turn those into reST for autodoc.
import re

_EPYTEXT_INLINE = [
    (re.compile(r"[CL]\{([^{}]*)\}"), r"``\1``"),
    (re.compile(r"I\{([^{}]*)\}"), r"*\1*"),
    (re.compile(r"B\{([^{}]*)\}"), r"**\1**"),
]
_EPYTEXT_FIELDS = [
    (re.compile(r"^(\s*)@param\s+(\w+):"), r"\1:param \2:"),
    (re.compile(r"^(\s*)@type\s+(\w+):"), r"\1:type \2:"),
    (re.compile(r"^(\s*)@ivar\s+(\w+):"), r"\1:ivar \2:"),
    (re.compile(r"^(\s*)@returns?:"), r"\1:returns:"),
    (re.compile(r"^(\s*)@rtype:"), r"\1:rtype:"),
    (re.compile(r"^(\s*)@raises?\s+([\w., ]+):"), r"\1:raises \2:"),
    (re.compile(r"^(\s*)@see:"), r"\1:see:"),
    (re.compile(r"^(\s*)@note:"), r"\1:note:"),
]


def _epytext_to_rest(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        for pattern, replacement in _EPYTEXT_INLINE:
            line = pattern.sub(replacement, line)
        for pattern, replacement in _EPYTEXT_FIELDS:
            line = pattern.sub(replacement, line)
        lines[i] = line
    # A field list must be preceded by a blank line.
    for i in range(len(lines) - 1, 0, -1):
        if lines[i].lstrip().startswith(":") and lines[i - 1].strip() and not lines[i - 1].lstrip().startswith(":") and not lines[i - 1].startswith(" "):
            lines.insert(i, "")


def setup(app):
    app.connect("autodoc-process-docstring", _epytext_to_rest)
