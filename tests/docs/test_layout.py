"""
The built documentation in a real browser: at 1280 px, no code block and
no table of the performance page is wider than the text column.

The page is built with Sphinx, a copy of it gets a small script that
measures every ``pre`` and ``table`` of the text column once the page has
loaded and writes what it found into the page, and headless Chromium
(Debian's ``chromium``) prints the resulting DOM (``--dump-dom``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict

from twisted.trial.unittest import SkipTest, TestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MEASURE = """
<script>
window.addEventListener("load", function () {
  var column = document.querySelector("div.body");
  var box = column.getBoundingClientRect(), style = getComputedStyle(column);
  var left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  var items = document.querySelectorAll("div.body pre, div.body table"), wide = [];
  items.forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.left < left - 0.5 || r.right > right + 0.5) {
      wide.push({tag: el.tagName.toLowerCase(), left: r.left, right: r.right, text: el.textContent.trim().slice(0, 50)});
    }
  });
  var out = document.createElement("pre");
  out.id = "txlibxl-layout";
  out.textContent = JSON.stringify({column: [left, right], viewport: window.innerWidth,
    page: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    checked: items.length, wide: wide});
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SkipTest("no headless Chromium (Debian: apt-get install chromium; make check installs it)")


def measure(html: str, page: str, width: int = 1280) -> Dict[str, Any]:
    """What MEASURE reports for C{page} of the built docs in C{html} at C{width} px."""
    browser = _chromium()
    checked = os.path.join(html, page.replace(".html", "-layout-check.html"))
    with open(os.path.join(html, page)) as f:
        text = f.read()
    with open(checked, "w") as f:
        f.write(text.replace("</body>", MEASURE + "</body>"))
    profile = tempfile.mkdtemp(prefix="txlibxl-chromium-")
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={width},900", "--dump-dom", "file://" + checked],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'<pre id="txlibxl-layout">([^<]*)</pre>', result.stdout)
    if match is None:
        raise AssertionError(f"Chromium reported no measurement (status {result.returncode}): {result.stderr[-2000:]}")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


class LayoutTests(TestCase):
    timeout = 400

    def _built(self) -> str:
        """The docs, built with Sphinx into a temporary directory."""
        _chromium()
        html = tempfile.mkdtemp(prefix="txlibxl-docs-")
        self.addCleanup(shutil.rmtree, html, True)
        result = subprocess.run(
            [sys.executable, "-m", "sphinx", "-q", "-b", "html", os.path.join(CHECKOUT, "docs"), html],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        return html

    def test_no_code_block_or_table_of_the_performance_page_is_wider_than_the_column_at_1280px(self) -> None:
        found = measure(self._built(), "performance.html", 1280)
        self.assertGreaterEqual(found["checked"], 5, "the page's tables and code blocks were not found")
        self.assertEqual(found["wide"], [])
        self.assertLessEqual(found["page"], found["client"], "the page scrolls sideways")
