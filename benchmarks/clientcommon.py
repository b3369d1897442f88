"""
What every Python client of the benchmarks shares, on any event loop:
the command line, the JSON lines, the CPU and memory readings, the
garbage collector's clock and the event tally.

Nothing here imports Twisted, so that a client on a plain asyncio loop
(:mod:`benchmarks.asyncioclient`) measures a process without a reactor;
:mod:`benchmarks.pyclient` and :mod:`benchmarks.bindingclient` use the
same helpers on the reactor.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["OPS", "Usage", "parse", "emit", "emit_event", "rss_kb", "CollectorClock", "collector", "collect_line", "rusage_line",
           "trace_heap_line", "heap_line", "HEAP_FRAMES",
           "redirect_paths", "EventTally", "STORM_COMMANDS", "parse_storm"]

OPS = ("shutdown", "reboot", "destroy", "pause", "unpause")

#: The commands of a death storm: what the floor and the asyncio clients take.
STORM_COMMANDS = ("quiet", "batched", "watch-death", "collect", "sleep", "rusage", "wait-events")


class Usage(Exception):
    """The command line is wrong (exit status 64)."""


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _domid(text: str) -> int:
    if not text.isdigit() or int(text) > 0x7FFF:
        raise Usage(f"not a domid: {text!r}")
    return int(text)


def parse(argv: Sequence[str]) -> List[tuple]:
    """
    The commands on C{argv} (all of cclient's that the Python clients
    know), checked before libxl is touched.

    :raises Usage: an unknown command or a bad argument.
    """
    commands: List[tuple] = []
    i = 0
    while i < len(argv):
        name = argv[i]
        i += 1
        if name in ("quiet", "batched", "watch-death-all", "unwatch-all", "rusage", "trace-heap", "heap"):
            commands.append((name,))
        elif name == "watch-death":
            domids = []
            while i < len(argv) and _number(argv[i]):
                domids.append(_domid(argv[i]))
                i += 1
            if not domids:
                raise Usage("watch-death D...")
            commands.append((name, domids))
        elif name == "wait-events":
            if i >= len(argv) or not _number(argv[i]):
                raise Usage("wait-events N [SECONDS]")
            count = int(float(argv[i]))
            i += 1
            seconds = 60.0
            if i < len(argv) and _number(argv[i]):
                seconds = float(argv[i])
                i += 1
            commands.append((name, count, seconds))
        elif name == "ops":
            if i >= len(argv) or argv[i] not in OPS:
                raise Usage("ops OP D... (OP: %s)" % " ".join(OPS))
            op = argv[i]
            i += 1
            domids = []
            while i < len(argv) and _number(argv[i]):
                domids.append(_domid(argv[i]))
                i += 1
            if not domids:
                raise Usage("ops OP D...")
            commands.append((name, op, domids))
        elif name == "profile-start":
            commands.append((name,))
        elif name == "profile-stop":
            if i >= len(argv):
                raise Usage("profile-stop FILE")
            commands.append((name, argv[i]))
            i += 1
        elif name == "collect":
            commands.append((name,))
        elif name == "sleep":
            if i >= len(argv) or not _number(argv[i]):
                raise Usage("sleep SECONDS")
            commands.append((name, float(argv[i])))
            i += 1
        else:
            raise Usage(f"unknown command {name}")
    if not commands:
        raise Usage("no command")
    return commands


def parse_storm(argv: Sequence[str], prog: str) -> List[tuple]:
    """
    The commands on C{argv}, which must all be death-storm commands
    (:data:`STORM_COMMANDS`).

    :raises Usage: another command, or a bad argument.
    """
    commands = parse(argv)
    for command in commands:
        if command[0] not in STORM_COMMANDS:
            raise Usage(f"{command[0]} is not a {prog} command")
    return commands


def emit(line: Dict[str, Any]) -> None:
    """Write C{line} to stdout as one compact JSON line (not flushed)."""
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")


_EVENT_NAMES = {"DomainShutdown": "domain_shutdown", "DomainDeath": "domain_death"}


def emit_event(event: Any, t: float) -> None:
    """Print C{event}, reached its waiter at C{t}, as cclient prints an event line."""
    kind = type(event).__name__
    line = {"event": _EVENT_NAMES.get(kind, kind), "t": t, "domid": event.domid, "uuid": event.uuid}
    reason = getattr(event, "reason", None)
    if reason is not None:
        line["shutdown_reason"] = reason.name.lower()
    emit(line)
    sys.stdout.flush()


def rss_kb() -> int:
    """This process's resident set size now, in KiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * (os.sysconf("SC_PAGESIZE") // 1024)


class CollectorClock:
    """
    The time this process spent in Python's cyclic garbage collector, and
    how many full (generation 2) collections it ran, since :meth:`install`.
    A full collection walks every object in the process: on a death storm
    it can cost more than the storm itself, so the benchmarks report it.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            if info.get("generation") == 2:
                self.full += 1


collector = CollectorClock()


def collect_line() -> Dict[str, Any]:
    """
    ``collect``: one full run of Python's garbage collector, now, and its
    line.  A client that has just armed N watches owes the collector a
    pass over every object that arming made; a process whose watches were
    armed long ago has paid it.  Run before a measured window, it keeps
    that debt out of the window; what the window allocates is collected
    inside it as usual (``gc_s``).
    """
    started = time.perf_counter()
    found = gc.collect()
    return {"cmd": "collect", "unreachable": found, "s": round(time.perf_counter() - started, 6)}


#: Frames kept per traced allocation: enough to reach, from inside
#: Twisted or txaio, the project frame that asked for it.
HEAP_FRAMES = 12

_LIBRARY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "txlibxl") + os.sep
_CLIENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def trace_heap_line() -> Dict[str, Any]:
    """``trace-heap``: start ``tracemalloc`` (L{HEAP_FRAMES} frames), and its line."""
    tracemalloc.start(HEAP_FRAMES)
    return {"cmd": "trace-heap", "frames": HEAP_FRAMES}


def heap_line() -> Dict[str, Any]:
    """
    ``heap``: the traced heap now, in bytes: C{traced} and C{peak}, and
    C{traced} split by who asked for each allocation: C{library} (the
    innermost frame of the project's own in txlibxl, so also the futures
    txlibxl makes through txaio), C{client} (the innermost such frame is
    the benchmark client's: its callbacks on those futures, its lists)
    and C{other} (no such frame, or one deeper than L{HEAP_FRAMES}).
    """
    traced, peak = tracemalloc.get_traced_memory()
    split = {"library": 0, "client": 0, "other": 0}
    for trace in tracemalloc.take_snapshot().traces:
        owner = "other"
        for frame in reversed(trace.traceback):  # innermost first
            if frame.filename.startswith(_LIBRARY_DIR):
                owner = "library"
                break
            if frame.filename.startswith(_CLIENT_DIR):
                owner = "client"
                break
        split[owner] += trace.size
    return {"cmd": "heap", "traced": traced, "peak": peak, **split}


def rusage_line() -> Dict[str, Any]:
    """cclient's ``rusage`` line, plus the collector's ``gc_s`` and ``gc_full``."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cmd": "rusage",
        "t": time.time(),
        "utime": ru.ru_utime,
        "stime": ru.ru_stime,
        "maxrss_kb": ru.ru_maxrss,
        "rss_kb": rss_kb(),
        "gc_s": round(collector.seconds, 6),
        "gc_full": collector.full,
    }


def redirect_paths() -> Optional[int]:
    """
    Point libxl's /var paths under ``TXLIBXL_SIM_ROOT`` through the
    preloaded shim (as cclient does); None if there is no shim or root.
    """
    root = os.environ.get("TXLIBXL_SIM_ROOT")
    process = ctypes.CDLL(None)
    redirect = getattr(process, "txsim_redirect_paths", None)
    if not root or redirect is None:
        return None
    redirect.argtypes = [ctypes.c_char_p]
    redirect.restype = ctypes.c_int
    return int(redirect(os.fsencode(root)))


class EventTally:
    """
    The events that reached a client: :meth:`count` time-stamps each one,
    :meth:`report` writes ``wait-events``' line and starts the next tally.
    Waiting for the count is the event loop's part (the subclasses').
    """

    def __init__(self) -> None:
        self.seen = 0
        self.t_first: Optional[float] = None
        self.t_last: Optional[float] = None
        self.failed = False

    def count(self) -> float:
        """One more event reached the client now; returns the time stamp."""
        t = time.time()
        self.seen += 1
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        return t

    def count_batch(self, n: int) -> float:
        """C{n} more events reached the client now, as one batch."""
        t = time.time()
        self.seen += n
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        return t

    def report(self, count: int, ok: bool) -> None:
        """
        Write the line of ``wait-events N`` (C{count}; C{ok}: N arrived in
        time), then keep the events beyond N for the next one (none after
        a timeout).
        """
        emit({
            "cmd": "wait-events",
            "wanted": count,
            "seen": self.seen,
            "timeout": not ok,
            "t_first": self.t_first,
            "t_last": self.t_last,
        })
        self.seen = self.seen - count if ok else 0
        self.t_first = self.t_last = None
