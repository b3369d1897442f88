"""
The performance page's plots (benchmarks/report.py), drawn from the
committed results: the ratio plot names its target lines.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List

from twisted.trial.unittest import SkipTest, TestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATEST = os.path.join(CHECKOUT, "benchmarks", "results", "latest.json")


class RatioPlotTests(TestCase):
    def _legends(self) -> Dict[str, List[List[str]]]:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SkipTest("matplotlib is not installed (the bench extra)")
        from benchmarks import report

        seen: Dict[str, List[List[str]]] = {}
        original = report._save

        def keep(plt: Any, fig: Any, directory: str, name: str) -> str:
            seen[name] = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]
            return original(plt, fig, directory, name)

        report._save = keep
        self.addCleanup(setattr, report, "_save", original)
        with open(LATEST) as f:
            results = json.load(f)
        report.render_plots(results, tempfile.mkdtemp(prefix="txlibxl-plots-"))
        return seen

    def test_the_ratio_plot_labels_each_target_line_with_its_value(self) -> None:
        legends = self._legends()["death-storm.png"]
        ratio = legends[1]
        from benchmarks.runner import TARGETS

        self.assertIn(f"wall ratio target ({TARGETS['storm_wall_ratio']:g})", ratio)
        self.assertIn(f"client CPU ratio target ({TARGETS['storm_cpu_ratio']:g})", ratio)
        self.assertIn(f"batched target ({TARGETS['storm_batch_cpu_ratio']:g})", ratio)
