"""
``twistd libxl-events``: its options and how its services fit together.

:class:`Options` parses the command line; :func:`makeService` builds a
``MultiService`` holding the :class:`~txlibxl.daemon.service.LibxlEventsService`,
one listening service per ``--listen`` endpoint, and the ``--ready-file``
writer.  The plugin file ``twisted/plugins/txlibxl_events.py`` only names
this module.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from .sinks.amqp_options import AMQP_PARAMETERS, check_amqp_options, make_amqp_sink

__all__ = ["Options", "makeService", "ListeningService", "xen_available", "NO_XEN_MESSAGE"]

_log = Logger(namespace="txlibxl.daemon.tap")

#: Files whose presence says this machine runs on Xen with a privileged
#: command interface (a dom0).
XEN_MARKERS = ("/dev/xen/privcmd", "/proc/xen/privcmd")

NO_XEN_MESSAGE = (
    "no Xen here: this is not a Xen dom0 ({markers} missing), so libxl cannot open a context. "
    "Run it on a Xen host as root, or try it on a simulated host: "
    "twistd -n libxl-events --simulate demo"
)

LOG_LEVELS = ("debug", "info", "warn", "error")


def xen_available() -> bool:
    """
    Whether libxl can reach a hypervisor: a Xen privileged command
    interface, or a simulated host this process was pointed at beforehand
    (``TXLIBXL_SIM_HYPERCALL`` and ``XENSTORED_PATH`` set, the shim
    preloaded).
    """
    if any(os.path.exists(path) for path in XEN_MARKERS):
        return True
    return bool(os.environ.get("TXLIBXL_SIM_HYPERCALL") and os.environ.get("XENSTORED_PATH"))


def _positive(name: str, text: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{name} must be a positive number, not {text!r}")
    if not value > 0:
        raise usage.UsageError(f"--{name} must be a positive number, not {text!r}")
    return value


class Options(usage.Options):
    """The command line of ``twistd libxl-events``."""

    synopsis = "[options]"
    longdesc = (
        "Follow every domain of this Xen host through libxenlight and publish their lifecycle "
        "(new, shutdown with its reason, death, CD-ROM eject) as JSON lines and over HTTP "
        "(Server-Sent Events on /events, /domains, /metrics, /healthz). "
        "Without --listen or --output, events go to standard output as JSON lines."
    )

    optFlags = [
        ["disk-eject", None, "Also watch every CD-ROM drive for ejects."],
    ]
    optParameters = [
        ["output", "o", None, "Write events as JSON lines to this file ('-' for standard output)."],
        ["domains", None, None, "Only these domains: a comma-separated list of domids and names."],
        ["simulate-rundir", None, None, "With --simulate: the simulated host's run directory (kept)."],
        ["rescan-interval", None, "5", "Seconds between safety-net rescans of the host's domains.", float],
        ["buffer", None, "10000", "Records kept for resuming /events from Last-Event-ID.", int],
        ["max-backoff", None, "30", "Longest wait, in seconds, between attempts to reopen libxl.", float],
        ["libxl-log-level", None, "warn", "Least severe libxl log level logged: " + ", ".join(LOG_LEVELS) + "."],
        ["ready-file", None, None, "Write a JSON file with the pid and bound addresses once running."],
    ] + AMQP_PARAMETERS
    compData = usage.Completions(
        optActions={
            "output": usage.CompleteFiles(),
            "simulate-rundir": usage.CompleteDirs(),
            "libxl-log-level": usage.CompleteList(LOG_LEVELS),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["simulate"] = None

    def opt_listen(self, description: str) -> None:
        """
        Serve HTTP on this Twisted endpoint (repeatable):
        tcp:8080:interface=127.0.0.1, unix:/run/txlibxl.sock, ssl:8443:privateKey=...
        """
        self["listen"].append(description)

    def opt_simulate(self, scenario: str) -> None:
        """
        Run against a simulated Xen host started as a child process,
        playing SCENARIO (a file, or a shipped name such as 'demo');
        without SCENARIO the host has only Domain-0.
        """
        self["simulate"] = scenario

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        # --simulate takes an optional scenario: a bare --simulate (last,
        # or followed by another option) means an empty host.
        if options is not None:
            args = list(options)
            for i, arg in enumerate(args):
                if arg == "--simulate" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                    args[i] = "--simulate="
            options = args
        super().parseOptions(options)

    def postOptions(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString

        for name in ("rescan-interval", "max-backoff"):
            _positive(name, self[name])
        _positive("buffer", self["buffer"], int)
        if self["libxl-log-level"] not in LOG_LEVELS:
            raise usage.UsageError(
                f"--libxl-log-level must be one of {', '.join(LOG_LEVELS)}, not {self['libxl-log-level']!r}"
            )
        for description in self["listen"]:
            try:
                serverFromString(reactor, description)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--listen {description!r} is not a usable endpoint: {e}")
        if self["domains"] is not None:
            from .discovery import DomainFilter

            try:
                self["domain-filter"] = DomainFilter.parse(self["domains"])
            except ValueError as e:
                raise usage.UsageError(f"--domains {self['domains']!r}: {e}")
        else:
            self["domain-filter"] = None
        if self["simulate"] is not None:
            if self["simulate"]:
                from .simulate import scenario_path

                try:
                    scenario_path(self["simulate"])
                except ValueError as e:
                    raise usage.UsageError(f"--simulate: {e}")
        else:
            if self["simulate-rundir"] is not None:
                raise usage.UsageError("--simulate-rundir needs --simulate")
            if not xen_available():
                raise usage.UsageError(NO_XEN_MESSAGE.format(markers=" and ".join(XEN_MARKERS)))
        check_amqp_options(self)
        if not self["listen"] and self["output"] is None and self["amqp"] is None:
            self["output"] = "-"


class ListeningService(Service):
    """
    Listens with C{factory} on the endpoint C{description} while running;
    :attr:`address` is the bound address as an endpoint string
    (``tcp:127.0.0.1:8080``, ``unix:/run/x.sock``) once listening.
    """

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self._reactor = reactor
        self.description = description
        self._factory = factory
        self._port: Any = None
        self.address: Optional[str] = None
        self._listening: List[defer.Deferred] = []

    def when_listening(self) -> defer.Deferred:
        """Fires with :attr:`address` once bound (fails if binding failed)."""
        if self.address is not None:
            return defer.succeed(self.address)
        d: defer.Deferred = defer.Deferred()
        self._listening.append(d)
        return d

    def startService(self) -> None:
        from twisted.internet.endpoints import serverFromString

        super().startService()
        d = serverFromString(self._reactor, self.description).listen(self._factory)
        d.addCallbacks(self._bound, self._failed)

    def _bound(self, port: Any) -> None:
        self._port = port
        host = port.getHost()
        if getattr(host, "type", None) in ("TCP", "TCP6"):
            self.address = f"tcp:{host.host}:{host.port}"
        else:
            self.address = f"unix:{getattr(host, 'name', host)}"
        _log.info("libxl-events HTTP listening on {address}", address=self.address)
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.callback(self.address)

    def _failed(self, failure: Any) -> None:
        _log.failure("cannot listen on {description}", failure, description=self.description)
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.errback(failure)
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()

    def stopService(self) -> Any:
        super().stopService()
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()
        return None


class ReadyFileService(Service):
    """
    Writes C{path} (JSON: ``pid``, ``listen``, ``simulate_rundir``) once the
    events service runs and every listener is bound; removes it on stop.
    """

    def __init__(self, path: str, events: Any, listeners: List[ListeningService], runner: Any) -> None:
        self.path = path
        self._events = events
        self._listeners = listeners
        self._runner = runner

    def startService(self) -> None:
        super().startService()
        d = defer.gatherResults(
            [self._events.when_running()] + [listener.when_listening() for listener in self._listeners],
            consumeErrors=True,
        )
        d.addCallback(self._write)
        d.addErrback(lambda f: _log.failure("not writing the ready file", f))

    def _write(self, _: Any) -> None:
        if not self.running:
            return
        info: Dict[str, Any] = {
            "pid": os.getpid(),
            "listen": [listener.address for listener in self._listeners],
            "simulate_rundir": self._runner.rundir if self._runner is not None else None,
        }
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(temporary, self.path)

    def stopService(self) -> None:
        super().stopService()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def makeService(options: Options) -> MultiService:
    """The services for C{options}: see the module docstring."""
    from twisted.internet import reactor

    from .recovery import Backoff
    from .service import LibxlEventsService
    from .sinks.http import HTTPSink
    from .sinks.jsonl import JSONLinesSink

    runner = None
    if options["simulate"] is not None:
        from .simulate import SimulatedHostRunner

        runner = SimulatedHostRunner(reactor, options["simulate"] or None, options["simulate-rundir"])
    events = LibxlEventsService(
        reactor,
        domains=options["domain-filter"],
        disk_eject=bool(options["disk-eject"]),
        rescan_interval=float(options["rescan-interval"]),
        backoff=Backoff(maximum=max(0.1, float(options["max-backoff"]))),
        host=runner,
        log_level=options["libxl-log-level"],
        host_name=options["host-name"],
    )
    top = MultiService()
    make_amqp_sink(options, events, top)
    events.setServiceParent(top)
    if options["output"] is not None:
        try:
            events.add_sink(JSONLinesSink.to_path(options["output"]))
        except OSError as e:
            raise usage.UsageError(f"--output {options['output']!r}: {e}")
    listeners: List[ListeningService] = []
    if options["listen"]:
        http = HTTPSink(reactor, events, buffer=int(options["buffer"]))
        events.add_sink(http)
        site = http.site()
        for description in options["listen"]:
            listener = ListeningService(reactor, description, site)
            listener.setServiceParent(top)
            listeners.append(listener)
    if options["ready-file"]:
        ReadyFileService(options["ready-file"], events, listeners, runner).setServiceParent(top)
    return top
