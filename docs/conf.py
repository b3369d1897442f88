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
autodoc_typehints_description_target = "documented"
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
# Wide code and tables stay in the text column (docs/_static/txlibxl.css).
html_static_path = ["_static"]
html_css_files = ["txlibxl.css"]
# Every cross-reference must resolve: a broken one fails the -W build.
nitpicky = True
# Only types of other projects may stay unresolved: intersphinx cannot reach
# their inventories offline (intersphinx_mapping is empty on purpose).
nitpick_ignore = [
    # Twisted's Deferred, as the docstrings and annotations name it.
    ("py:class", "twisted.internet.defer.Deferred"),
    ("py:class", "Deferred"),
    # Twisted Web's Site (txlibxl.daemon.sinks.http.HTTPSink.site).
    ("py:class", "twisted.web.server.Site"),
    # The standard library's select module (poll bits, txlibxl.interfaces).
    ("py:mod", "select"),
    # The standard library's logging.Logger (txlibxl.loop.logs.StdlibLogger.logger).
    ("py:class", "logging.Logger"),
    # prometheus_client's registry (txlibxl.daemon.metrics.Metrics).
    ("py:class", "CollectorRegistry"),
    ("py:class", "prometheus_client.registry.CollectorRegistry"),
]


import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

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
    (re.compile(r"^(\s*)@cvar\s+(\w+):"), r"\1:cvar \2:"),
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


def _epytext_lines(text):
    lines = inspect.cleandoc(text or "").splitlines()
    _epytext_to_rest(None, None, None, None, None, lines)
    return lines


class AutoInterface(Directive):
    """
    ``.. autointerface:: dotted.name``: a zope.interface declaration as a
    ``py:class`` with its methods and attributes (autodoc skips interfaces:
    they are not classes).
    """

    required_arguments = 1

    def run(self):
        from zope.interface.interface import Method

        module_name, _, name = self.arguments[0].rpartition(".")
        iface = getattr(importlib.import_module(module_name), name)
        out = [f".. py:class:: {name}", f"   :module: {module_name}", ""]
        out += ["   " + line for line in _epytext_lines(iface.__doc__)] + [""]
        for member, desc in iface.namesAndDescriptions():
            if isinstance(desc, Method):
                out += [f"   .. py:method:: {member}{desc.getSignatureString()}", ""]
            else:
                out += [f"   .. py:attribute:: {member}", ""]
            out += ["      " + line for line in _epytext_lines(desc.getDoc())] + [""]
        content = StringList(out, source=f"<autointerface {self.arguments[0]}>")
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, content, node)
        return node.children


def _unique_suffix(app, env, node, contnode):
    """
    An unqualified Python reference (``IChildSink`` in an annotation,
    ``OSEventsClosed`` in a docstring) that names exactly one documented
    object of the project resolves to it; none or several stay unresolved.
    """
    if node.get("refdomain") != "py" or "." in node.get("reftarget", ""):
        return None
    target = node["reftarget"]
    domain = env.get_domain("py")
    found = [name for name in domain.objects if name.endswith("." + target)]
    if len(found) != 1:
        return None
    return domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), found[0], node, contnode)


def setup(app):
    app.connect("autodoc-process-docstring", _epytext_to_rest)
    app.add_directive("autointerface", AutoInterface)
    app.connect("missing-reference", _unique_suffix)
