"""
README.md's example runs as written, against a simulated host, and prints
what its comments say it prints.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, List

from twisted.internet import defer, utils

from txlibxl.testing import SimulatedHostTestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(CHECKOUT, "README.md")


def python_blocks(path: str) -> List[str]:
    """The ```python blocks of a Markdown file, in order."""
    with open(path) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def printed_by_comments(code: str) -> List[str]:
    """What the ``print(...)  # <output>`` comments of C{code} say it prints."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s*#\s*(.*)$", code, re.M)]


#: Run before the example in its process: the shim (preloaded) redirects
#: libxl's /var/run/xen and /var/lib/xen under the simulated host's root.
PREAMBLE = (
    "import ctypes, os\n"
    "from txlibxl._libxl import loader\n"
    "loader.load()\n"
    "_shim = ctypes.CDLL(os.environ['LD_PRELOAD'].split()[0], mode=ctypes.RTLD_GLOBAL)\n"
    "assert _shim.txsim_redirect_paths(os.fsencode(os.environ['TXLIBXL_SIM_ROOT'])) == 0\n"
)


def as_pattern(shown: str) -> str:
    """A README output line as a regex: ``'…'`` stands for any quoted text."""
    return "^" + re.escape(shown).replace(re.escape("'…'"), "'[^']*'") + "$"


class ReadmeExampleTests(SimulatedHostTestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_example_prints_what_its_comments_say(self) -> Any:
        (code,) = python_blocks(README)
        expected = printed_by_comments(code)
        self.assertEqual(len(expected), 2, "the example's print comments")
        # Domain 7, powered off: what the example waits for.
        created = yield self.host.control.create_domains(7, prefix="guest")
        self.assertEqual(created[-1]["domid"], 7)
        yield self.host.control.shutdown(7, "poweroff")
        env = dict(os.environ)
        env.update(self.host.environment(preload=True))
        out, err, code_ = yield utils.getProcessOutputAndValue(sys.executable, ["-c", PREAMBLE + code], env=env, path=CHECKOUT)
        self.assertEqual(code_, 0, err.decode(errors="replace")[-3000:])
        lines = out.decode().splitlines()
        self.assertEqual(len(lines), len(expected), lines)
        for line, shown in zip(lines, expected):
            self.assertRegex(line, as_pattern(shown))
