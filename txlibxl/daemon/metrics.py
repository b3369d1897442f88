"""
The metrics of ``twistd libxl-events``, kept with ``prometheus_client`` in
a registry of the service's own (never the library's global one, so that
tests and an embedding application see only their own): :class:`Metrics`.

Counters (exposed with ``_total``; ``prometheus_client`` adds the
matching ``_created`` series):

* ``txlibxl_events_total{type}``: records published, by type;
* ``txlibxl_libxl_calls_total{call}`` and ``txlibxl_libxl_errors_total{call}``:
  libxl (and libxenstore) calls the service made, and those that failed;
* ``txlibxl_disasters_total``: libxl disasters and lost xenstore connections;
* ``txlibxl_reconnects_total``: new contexts opened after a recovery;
* ``txlibxl_sink_errors_total{sink}``: records a sink failed to take.

The histogram ``txlibxl_event_latency_seconds{type}`` is the time from an
event reaching the service to its record published (every sink's
``publish`` returned); see ``docs/plugin.rst`` for where each type's
clock starts.  Gauges are read from callables at each scrape
(:meth:`Metrics.gauge`, :meth:`Metrics.labelled_gauge`), and the
process collector adds ``process_*`` (CPU, memory, open fds).

The exposition is rendered on the reactor thread
(:func:`render`), so that the gauges read the service's state where it
lives.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

__all__ = ["Metrics", "CONTENT_TYPE", "LATENCY_BUCKETS", "render"]

#: The Content-Type of the Prometheus text format.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Seconds: publishing is a matter of microseconds when all is well, and of
#: a blocked output or a slow scan when it is not.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_COUNTERS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "txlibxl_events_total": ("Event records published, by type.", ("type",)),
    "txlibxl_libxl_calls_total": ("libxl and libxenstore calls made by the service.", ("call",)),
    "txlibxl_libxl_errors_total": ("libxl and libxenstore calls that failed.", ("call",)),
    "txlibxl_disasters_total": ("libxl disasters and lost xenstore connections.", ()),
    "txlibxl_reconnects_total": ("libxl contexts reopened after a recovery.", ()),
    "txlibxl_sink_errors_total": ("Records a sink failed to take.", ("sink",)),
}


class _LabelledGauges:
    """A collector: one gauge family whose samples are read at each scrape."""

    def __init__(self, name: str, help: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
        self._name = name
        self._help = help
        self._label = label
        self._read = read

    def describe(self) -> Iterable[Any]:
        return [GaugeMetricFamily(self._name, self._help, labels=[self._label])]

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(self._name, self._help, labels=[self._label])
        for key, value in sorted(self._read().items()):
            family.add_metric([key], float(value))
        return [family]


class Metrics:
    """
    What the service counts, in its ``registry``.

    :param registry: the registry to fill (a new one by default).
    :param process: also collect the ``process_*`` metrics of this process.
    """

    def __init__(self, registry: Optional[CollectorRegistry] = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._counters: Dict[str, Counter] = {}
        self._labels: Dict[str, Tuple[str, ...]] = {}
        for name, (help, labels) in _COUNTERS.items():
            self._counters[name] = Counter(name[: -len("_total")], help, labels, registry=self.registry)
            self._labels[name] = labels
        self.latency = Histogram(
            "txlibxl_event_latency_seconds",
            "From an event reaching the service to its record published, by type.",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if process:
            ProcessCollector(registry=self.registry)

    def counter(self, name: str, help: str, label: Optional[str] = None) -> None:
        """
        Add counter C{name} (ending in ``_total``; a sink's own, say),
        labelled by C{label} if given.  Adding a name twice does nothing.
        """
        if name in self._counters:
            return
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total, not {name!r}")
        labels = (label,) if label is not None else ()
        self._counters[name] = Counter(name[: -len("_total")], help, labels, registry=self.registry)
        self._labels[name] = labels

    def count(self, name: str, label: str = "", amount: int = 1) -> None:
        """Add C{amount} to counter C{name} (one of the names above) for C{label}."""
        counter = self._counters[name]
        (counter.labels(label) if self._labels[name] else counter).inc(amount)

    def value(self, name: str, label: str = "") -> float:
        """The current value of a counter."""
        labels = {self._labels[name][0]: label} if self._labels[name] else {}
        return self.registry.get_sample_value(name, labels) or 0

    def start_labels(self, name: str, labels: Iterable[str]) -> None:
        """Show counter C{name} at 0 for each of C{labels} before it first counts."""
        for label in labels:
            self._counters[name].labels(label)

    def observe_latency(self, kind: str, seconds: float) -> None:
        """One record of type C{kind} took C{seconds} to publish."""
        self.latency.labels(kind).observe(seconds)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """Report C{read()} as gauge C{name} at each scrape."""
        Gauge(name, help, registry=self.registry).set_function(read)

    def labelled_gauge(self, name: str, help: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
        """Report C{read()}, a mapping of label value to value, as gauge C{name}."""
        self.registry.register(_LabelledGauges(name, help, label, read))

    def render(self) -> str:
        """Everything, as Prometheus text."""
        return generate_latest(self.registry).decode("utf-8")


def render(registry: CollectorRegistry, accept: Optional[str]) -> Tuple[bytes, str]:
    """The exposition of C{registry} in the format C{accept} asks for (Prometheus text or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
