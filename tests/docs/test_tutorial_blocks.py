"""
docs/tutorial.rst's Python, pasted in page order, is a program that runs
and prints what the page says it prints.

The blocks are read from the page's source: ``code-block:: python``
bodies as written, ``literalinclude`` ones resolved by Sphinx's own reader
(``:pyobject:``, ``:start-after:``, ``:dedent:`` ...), so what is run is
what the built page shows.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any, Dict, List

from twisted.internet import defer, utils
from twisted.trial.unittest import TestCase

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs")
TUTORIAL = os.path.join(DOCS, "tutorial.rst")

_DIRECTIVE = re.compile(r"^\.\. (code-block|literalinclude)::\s*(\S*)\s*$")


def _body(lines: List[str], i: int) -> (int, Dict[str, str], List[str]):
    """The options and indented content of the directive whose first line is C{i - 1}."""
    options: Dict[str, str] = {}
    while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
        name, _, value = lines[i].strip()[1:].partition(":")
        options[name] = value.strip()
        i += 1
    content: List[str] = []
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
        content.append(lines[i])
        i += 1
    return i, options, content


def python_blocks(path: str = TUTORIAL) -> List[str]:
    """The page's Python code blocks, in page order."""
    from sphinx.config import Config
    from sphinx.directives.code import LiteralIncludeReader

    config = Config({}, {})
    config.init_values()
    with open(path) as f:
        lines = f.read().splitlines()
    blocks: List[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        i, options, content = _body(lines, i)
        kind, argument = match.groups()
        if kind == "code-block" and argument == "python":
            text = "\n".join(content).strip("\n") + "\n"
            indent = min(len(l) - len(l.lstrip()) for l in text.splitlines() if l.strip())
            blocks.append("\n".join(l[indent:] for l in text.splitlines()) + "\n")
        elif kind == "literalinclude" and argument.endswith(".py"):
            opts: Dict[str, Any] = dict(options)
            if "dedent" in opts:
                opts["dedent"] = int(opts["dedent"])
            text, _ = LiteralIncludeReader(os.path.join(os.path.dirname(path), argument), opts, config).read()
            blocks.append(text)
    return blocks


def printed(path: str = TUTORIAL) -> List[str]:
    """The lines of the page's ``It prints::`` block."""
    with open(path) as f:
        text = f.read()
    block = text.split("It prints::\n", 1)[1]
    return [l.strip() for l in re.match(r"\n((?:    .*\n|\n)*)", block).group(1).splitlines() if l.strip()]


def as_pattern(shown: str) -> str:
    """A line of the page's output as a regex: ``…`` stands for anything."""
    return "^" + ".*".join(re.escape(part) for part in shown.split("…")) + "$"


class TutorialBlocksTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_pages_code_blocks_in_order_run_and_print_what_the_page_says(self) -> Any:
        blocks = python_blocks()
        self.assertGreaterEqual(len(blocks), 2)
        program = os.path.join(tempfile.mkdtemp(prefix="txlibxl-tutorial-"), "pasted.py")
        with open(program, "w") as f:
            f.write("\n\n".join(blocks))
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, [program], env=dict(os.environ))
        self.assertEqual(code, 0, err.decode(errors="replace")[-3000:] + "\n--- the program:\n" + "\n\n".join(blocks))
        lines = out.decode().splitlines()
        expected = printed()
        self.assertEqual(len(lines), len(expected), lines)
        for line, shown in zip(lines, expected):
            self.assertRegex(line, as_pattern(shown))
