"""
``twistd libxl-events``: its options and how its services fit together.

:class:`Options` parses the command line; :func:`makeService` builds a
:class:`DaemonService` holding one listening service per ``--listen``
endpoint (:mod:`txlibxl.daemon.listening`), the
:class:`~txlibxl.daemon.service.LibxlEventsService`, the
``--accept-migrations`` listener (:mod:`txlibxl.daemon.migrations`) and
the ``--ready-file`` writer.  The plugin file
``twisted/plugins/txlibxl_events.py`` only names this module.

Start-up either succeeds or ends the process with a non-zero status and
one line saying why: see :mod:`txlibxl.daemon.startup`.  What can be
checked before the reactor runs is checked in :func:`makeService` (the
output file is opened, the ready file's directory is tried); the
listeners bind in ``privilegedStartService``, before the events service
starts, so that a port already taken stops the daemon before it starts a
simulated host or opens libxl.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from .listening import PRIVATE_SOCKET_MODE, ListeningService, _fail_by_logging, _is_unix, _reason, private_unix_endpoint
from .logs import LOG_LEVELS as DAEMON_LOG_LEVELS
from .migrations import MIGRATION_PARAMETERS, check_migration_options, make_migration_service
from .sinks.amqp_options import AMQP_PARAMETERS, check_amqp_options, make_amqp_sink
from .startup import EXIT_FAILURE, NoXenError, ProcessExit, StartupError, usage_failed

__all__ = [
    "Options",
    "makeService",
    "DaemonService",
    "ListeningService",
    "ReadyFileService",
    "xen_available",
    "NO_XEN_MESSAGE",
]

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
        ["access-log", None, "Log every HTTP request (none are logged by default)."],
    ]
    optParameters = [
        ["output", "o", None, "Write events as JSON lines to this file ('-' for standard output)."],
        ["domains", None, None, "Only these domains: a comma-separated list of domids and names."],
        ["simulate-rundir", None, None, "With --simulate: the simulated host's run directory (kept)."],
        ["rescan-interval", None, "5", "Seconds between safety-net rescans of the host's domains.", float],
        ["buffer", None, "10000", "Records kept for resuming /events from Last-Event-ID.", int],
        ["max-backoff", None, "30", "Longest wait, in seconds, between attempts to reopen libxl.", float],
        ["libxl-log-level", None, "warn", "Least severe libxl log level logged: " + ", ".join(LOG_LEVELS) + "."],
        ["log-level", None, "info", "Least severe level written to twistd's log: " + ", ".join(DAEMON_LOG_LEVELS) + "."],
        ["ready-file", None, None, "Write a JSON file with the pid and bound addresses once running."],
        ["state-dir", None, None, "Where seq is kept, never to be reused (default: " + "/var/lib/txlibxl-events; with --simulate, a temporary directory)."],
        ["listen-group", None, None, "Give the unix: sockets to this group (with mode=660 in the endpoint, its members may connect)."],
    ] + AMQP_PARAMETERS + MIGRATION_PARAMETERS
    compData = usage.Completions(
        optActions={
            "output": usage.CompleteFiles(),
            "simulate-rundir": usage.CompleteDirs(),
            "state-dir": usage.CompleteDirs(),
            "migration-cert": usage.CompleteFiles(),
            "migration-key": usage.CompleteFiles(),
            "migration-ca": usage.CompleteFiles(),
            "libxl-log-level": usage.CompleteList(LOG_LEVELS),
            "log-level": usage.CompleteList(DAEMON_LOG_LEVELS),
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
        A unix: socket is created mode 0600 unless the endpoint says mode=.
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
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise  # not parsed by twistd: the caller reports it
            # twistd would print its whole usage text before the error.
            raise usage_failed(e, EXIT_FAILURE if isinstance(e, NoXenError) else 2) from None

    def postOptions(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString

        for name in ("rescan-interval", "max-backoff"):
            _positive(name, self[name])
        _positive("buffer", self["buffer"], int)
        if self["log-level"] not in DAEMON_LOG_LEVELS:
            raise usage.UsageError(
                f"--log-level must be one of {', '.join(DAEMON_LOG_LEVELS)}, not {self['log-level']!r}"
            )
        if self["libxl-log-level"] not in LOG_LEVELS:
            raise usage.UsageError(
                f"--libxl-log-level must be one of {', '.join(LOG_LEVELS)}, not {self['libxl-log-level']!r}"
            )
        self["listen"] = [private_unix_endpoint(d) for d in self["listen"]]
        for description in self["listen"]:
            try:
                serverFromString(reactor, description)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--listen {description!r} is not a usable endpoint: {e}")
        self["listen-gid"] = None
        if self["listen-group"] is not None:
            import grp

            try:
                group = self["listen-group"]
                self["listen-gid"] = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                raise usage.UsageError(f"--listen-group: no group {self['listen-group']!r}")
            if not any(_is_unix(d) for d in self["listen"]):
                raise usage.UsageError("--listen-group needs a --listen unix: endpoint")
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
                raise NoXenError(NO_XEN_MESSAGE.format(markers=" and ".join(XEN_MARKERS)))
        check_amqp_options(self)
        check_migration_options(self)
        if not self["listen"] and self["output"] is None and self["amqp"] is None:
            self["output"] = "-"


class ReadyFileService(Service):
    """
    Writes C{path} (JSON: ``pid``, ``listen``, ``simulate_rundir``,
    ``migrations``: the migration listener's address or ``null``) once the
    events service runs and every listener is bound; removes it on stop.
    A file that cannot be written is a failure (given to C{on_failure}):
    whatever waits for it would wait forever.
    """

    def __init__(
        self,
        path: str,
        events: Any,
        listeners: List[ListeningService],
        runner: Any,
        on_failure: Callable[[str], None] = _fail_by_logging,
        migrations: Optional[ListeningService] = None,
    ) -> None:
        self.path = path
        self._events = events
        self._listeners = listeners
        self._migrations = migrations
        self._runner = runner
        self._on_failure = on_failure

    @staticmethod
    def check_writable(path: str) -> None:
        """
        Try to write (and remove) the temporary file next to C{path}.

        :raises StartupError: it cannot be written.
        """
        temporary = path + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8"):
                pass
            os.unlink(temporary)
        except OSError as e:
            raise StartupError(f"--ready-file {path!r}: cannot write there: {e.strerror or e}") from None

    def startService(self) -> None:
        super().startService()
        d = defer.gatherResults(
            [self._events.when_running()]
            + [listener.when_listening() for listener in self._listeners + [self._migrations] if listener is not None],
            consumeErrors=True,
        )
        d.addCallback(self._write)
        # A listener that failed has said so already.
        d.addErrback(lambda f: None)

    def _write(self, _: Any) -> None:
        if not self.running:
            return
        info: Dict[str, Any] = {
            "pid": os.getpid(),
            "listen": [listener.address for listener in self._listeners],
            "simulate_rundir": self._runner.rundir if self._runner is not None else None,
            "migrations": self._migrations.address if self._migrations is not None else None,
        }
        temporary = self.path + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(info, f)
            os.replace(temporary, self.path)
        except OSError as e:
            self._on_failure(f"cannot write the ready file {self.path!r}: {_reason(e)}")

    def stopService(self) -> None:
        super().stopService()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class DaemonService(MultiService):
    """
    The daemon's top service: its children are started in order (the
    listeners, the events service, the ready-file writer) unless start-up
    has already failed (``exit``), in which case nothing more starts
    and the reactor stops.

    :ivar exit: the :class:`~txlibxl.daemon.startup.ProcessExit` every
        start-up failure goes to.
    """

    def __init__(self, exit: ProcessExit, log_observer: Any = None) -> None:
        super().__init__()
        self.exit = exit
        self._log_observer = log_observer

    def setServiceParent(self, parent: Any) -> Any:
        """
        Join C{parent}; if it is twistd's application, give it the
        daemon's log observer (``txlibxl.daemon.logs.twistd_observer``).
        """
        result = super().setServiceParent(parent)
        if self._log_observer is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, self._log_observer)
        return result

    def privilegedStartService(self) -> None:
        for service in self:
            service.privilegedStartService()
            if self.exit.failed:
                return

    def startService(self) -> None:
        if self.exit.failed:
            # Not started: the reactor stops as soon as it runs.
            Service.startService(self)
            return
        Service.startService(self)
        for service in self:
            try:
                service.startService()
            except Exception as e:
                _log.failure("starting {service}", service=getattr(service, "name", None) or service)
                self.exit.fail(f"cannot start: {type(e).__name__}: {_reason(e)}")
            if self.exit.failed:
                return

    def stopService(self) -> Any:
        # Stop only what was started (in reverse order), as MultiService does.
        started = [service for service in self if service.running or isinstance(service, ListeningService)]
        Service.stopService(self)
        deferreds = [defer.maybeDeferred(service.stopService) for service in reversed(started)]
        return defer.DeferredList(deferreds)


def makeService(options: Options) -> MultiService:
    """
    The services for C{options}: see the module docstring.

    Under twistd (the options have a ``parent``), a :class:`StartupError`
    here becomes one line on standard error and exit status 1; called
    otherwise (a test, an application), it is raised.
    """
    from twisted.internet import reactor

    under_twistd = getattr(options, "parent", None) is not None
    exit = ProcessExit(reactor, echo_to_stderr=under_twistd and _logs_elsewhere(options.parent))
    try:
        top = _make_service(options, reactor, exit)
    except StartupError as e:
        if not under_twistd:
            raise
        raise usage_failed(e, EXIT_FAILURE) from None
    if under_twistd:
        exit.install()
    return top


def _logs_elsewhere(server_options: Any) -> bool:
    """Whether twistd logs somewhere other than standard output or error."""
    try:
        logfile = server_options.get("logfile")
        return bool(server_options.get("syslog")) or bool(logfile and logfile != "-") or not server_options.get(
            "nodaemon"
        )
    except Exception:
        return False


#: Where ``seq`` is kept on a real host.
DEFAULT_STATE_DIR = "/var/lib/txlibxl-events"


def _sequence_store(options: Options) -> Any:
    """The ``--state-dir`` store; a temporary one for ``--simulate`` without it."""
    from .sequence import SequenceStore

    if options["state-dir"] is not None:
        return SequenceStore(options["state-dir"])
    if options["simulate"] is not None:
        import tempfile

        return SequenceStore(tempfile.mkdtemp(prefix="txlibxl-events-state-"), remove=True)
    return SequenceStore(DEFAULT_STATE_DIR)


def _add_output(events: Any, options: Options) -> None:
    from .sinks.jsonl import JSONLinesSink

    if options["output"] is not None:
        try:
            events.add_sink(JSONLinesSink.to_path(options["output"]))
        except OSError as e:
            raise StartupError(f"--output {options['output']!r}: {e.strerror or e}") from None


def _make_service(options: Options, reactor: Any, exit: ProcessExit) -> DaemonService:
    from .recovery import Backoff
    from .service import LibxlEventsService
    from .sinks.http import HTTPSink

    sequence = _sequence_store(options)
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
        on_failure=exit.fail,
        sequence=sequence,
    )
    try:
        if options["ready-file"]:
            ReadyFileService.check_writable(options["ready-file"])
        amqp = make_amqp_sink(options, events, sequence.directory)
        migrations = make_migration_service(options, reactor, events, exit.fail)
        _add_output(events, options)
    except StartupError:
        sequence.close()
        raise
    observer = None
    if getattr(options, "parent", None) is not None:
        from .logs import twistd_observer

        observer = twistd_observer(options.parent, options["log-level"])
    top = DaemonService(exit, observer)
    if amqp is not None:
        amqp.setServiceParent(top)
    listeners: List[ListeningService] = []
    if options["listen"]:
        http = HTTPSink(reactor, events, buffer=int(options["buffer"]), access_log=bool(options["access-log"]))
        events.add_sink(http)
        site = http.site()
        for description in options["listen"]:
            group = options["listen-gid"] if _is_unix(description) else None
            listener = ListeningService(reactor, description, site, on_failure=exit.fail, group=group)
            listener.setServiceParent(top)
            listeners.append(listener)
    events.setServiceParent(top)
    if migrations is not None:
        # After the events service: stopped before it, while its Context is open.
        migrations.setServiceParent(top)
    if options["ready-file"]:
        ReadyFileService(options["ready-file"], events, listeners, runner, on_failure=exit.fail,
                         migrations=migrations).setServiceParent(top)
    return top
