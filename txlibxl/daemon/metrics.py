"""
The counters and gauges of ``twistd libxl-events``, in the Prometheus
text exposition format (version 0.0.4): :class:`Metrics`.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, Iterable, List, Optional, Tuple

__all__ = ["Metrics", "CONTENT_TYPE"]

#: The Content-Type of :meth:`Metrics.render`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """
    What the service counts.  Counters only grow; gauges are read when
    rendered from the callables given to :meth:`gauge`.

    Counters (all ``_total``):

    * ``txlibxl_events_total{type}``: records published, by type;
    * ``txlibxl_libxl_calls_total{call}`` and ``txlibxl_libxl_errors_total{call}``:
      libxl (and libxenstore) calls the service made, and those that failed;
    * ``txlibxl_disasters_total``: libxl disasters and lost xenstore connections;
    * ``txlibxl_reconnects_total``: new contexts opened after a recovery;
    * ``txlibxl_sink_errors_total{sink}``: records a sink failed to take.
    """

    _HELP = {
        "txlibxl_events_total": "Event records published, by type.",
        "txlibxl_libxl_calls_total": "libxl and libxenstore calls made by the service.",
        "txlibxl_libxl_errors_total": "libxl and libxenstore calls that failed.",
        "txlibxl_disasters_total": "libxl disasters and lost xenstore connections.",
        "txlibxl_reconnects_total": "libxl contexts reopened after a recovery.",
        "txlibxl_sink_errors_total": "Records a sink failed to take.",
    }

    def __init__(self) -> None:
        self._HELP = dict(self._HELP)
        self._LABELS = dict(self._LABELS)
        self._counters: Dict[str, Counter] = {name: Counter() for name in self._HELP}
        self._gauges: List[Tuple[str, str, Callable[[], float]]] = []

    def counter(self, name: str, help: str, label: Optional[str] = None) -> None:
        """
        Add counter C{name} (a sink's own, say), labelled by C{label} if
        given; counting it before this is an error.
        """
        if name not in self._HELP:
            self._HELP[name] = help
            self._counters[name] = Counter()
            if label is not None:
                self._LABELS[name] = label

    def count(self, name: str, label: str = "", amount: int = 1) -> None:
        """Add C{amount} to counter C{name} (one of the names above) for C{label}."""
        self._counters[name][label] += amount

    def value(self, name: str, label: str = "") -> int:
        """The current value of a counter."""
        return self._counters[name][label]

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """Report C{read()} as gauge C{name} at each render."""
        self._gauges.append((name, help, read))

    _LABELS = {
        "txlibxl_events_total": "type",
        "txlibxl_libxl_calls_total": "call",
        "txlibxl_libxl_errors_total": "call",
        "txlibxl_sink_errors_total": "sink",
    }

    def render(self) -> str:
        """Everything, as Prometheus text."""
        lines: List[str] = []
        for name, help in self._HELP.items():
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} counter")
            label = self._LABELS.get(name)
            values: Iterable[Tuple[str, int]] = sorted(self._counters[name].items())
            if label is None:
                lines.append(f"{name} {self._counters[name]['']}")
            else:
                for key, count in values:
                    lines.append(f'{name}{{{label}="{_escape(key)}"}} {count}')
        for name, help, read in self._gauges:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {float(read()):g}")
        return "\n".join(lines) + "\n"
