"""
The C libxl client (``cclient.c``): building it and running it from trial.

``cclient`` is a minimal toolstack with its own osevent hooks and poll(2)
loop (see the header of ``cclient.c`` for its commands and output).  Tests
use it to drive the real libxenlight against a simulated host from a
separate process, as xl or libvirt would.

* :func:`build` compiles it (``gcc -O2`` against libxenlight) and raises
  :class:`CClientUnavailable` when gcc or the libxl headers are missing,
  so tests can skip with the reason; :func:`cached_build` builds once per
  source version and user.
* :class:`CClientProcess` runs it with the reactor and hands out its JSON
  lines as Deferreds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cclient.c")
LIBS = ["-lxenlight", "-lxentoollog", "-ldl", "-lm"]


class CClientUnavailable(Exception):
    """The C client cannot be built here: no compiler or no libxl headers."""


class CClientBuildError(Exception):
    """The compiler rejected ``cclient.c`` (a bug, not a missing tool)."""


class CClientFailed(Exception):
    """The client did not produce what a test waited for; carries its output."""


def _compiler() -> str:
    for name in ("gcc", "cc"):
        path = shutil.which(name)
        if path:
            return path
    raise CClientUnavailable("no C compiler (gcc) on PATH")


def _check_headers(cc: str) -> None:
    probe = subprocess.run(
        [cc, "-E", "-x", "c", "-"],
        input=b"#include <libxl.h>\n#include <libxl_utils.h>\n#include <xentoollog.h>\n",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if probe.returncode != 0:
        raise CClientUnavailable(
            "libxl headers missing (install libxen-dev): " + probe.stderr.decode(errors="replace").strip()
        )


def build(dest_dir: str) -> str:
    """
    Compile ``cclient.c`` into C{dest_dir}/cclient and return its path.

    @raise CClientUnavailable: no compiler, or no libxl headers/libraries.
    @raise CClientBuildError: the source does not compile.
    """
    cc = _compiler()
    _check_headers(cc)
    os.makedirs(dest_dir, exist_ok=True)
    out = os.path.join(dest_dir, "cclient")
    tmp = out + f".tmp{os.getpid()}"
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", tmp, SOURCE] + LIBS
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        text = result.stderr.decode(errors="replace")
        if "cannot find -lxen" in text:
            raise CClientUnavailable("libxenlight development libraries missing (install libxen-dev): " + text)
        raise CClientBuildError(f"{' '.join(cmd)} failed:\n{text}")
    os.replace(tmp, out)
    return out


_cache: Dict[str, str] = {}


def cached_build() -> str:
    """
    L{build} into a per-user directory named for the source's hash, once:
    later calls (and later test runs) reuse the binary.
    """
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    if digest in _cache:
        return _cache[digest]
    dest = os.path.join(tempfile.gettempdir(), f"txlibxl-cclient-{os.getuid()}-{digest}")
    path = os.path.join(dest, "cclient")
    if not os.access(path, os.X_OK):
        path = build(dest)
    _cache[digest] = path
    return path


Predicate = Callable[[Dict[str, Any]], bool]


class CClientProcess(ProcessProtocol):
    """
    A running cclient.  Every stdout line is parsed as JSON into
    C{self.lines}; L{wait_for} gives a Deferred for the first line matching
    a predicate (already seen or future) and L{finished} one for the exit.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.lines: List[Dict[str, Any]] = []
        self.stderr = b""
        self._buf = b""
        self._waiters: List[Tuple[Predicate, defer.Deferred]] = []
        self._ended: List[defer.Deferred] = []
        self.exit_code: Optional[int] = None
        self.ended = False

    @classmethod
    def spawn(
        cls, reactor: Any, binary: str, args: Sequence[str], env: Dict[str, str]
    ) -> "CClientProcess":
        """Start C{binary args...} with exactly C{env} plus PATH."""
        proto = cls(reactor)
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full_env.update(env)
        reactor.spawnProcess(proto, binary, [binary, *args], env=full_env)
        return proto

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for raw in complete:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"unparsable": raw.decode(errors="replace")}
            self.lines.append(line)
            self._check_waiters(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        if len(self.stderr) > 1 << 20:
            self.stderr = self.stderr[-(1 << 19):]

    def _check_waiters(self, line: Dict[str, Any]) -> None:
        for pair in list(self._waiters):
            predicate, d = pair
            if predicate(line):
                self._waiters.remove(pair)
                d.callback(line)

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        if isinstance(reason.value, error.ProcessDone):
            self.exit_code = 0
        elif isinstance(reason.value, error.ProcessTerminated):
            v = reason.value
            self.exit_code = v.exitCode if v.exitCode is not None else -(v.signal or 0)
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(CClientFailed(self.describe("exited before the awaited line")))
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(self.exit_code)

    def describe(self, what: str) -> str:
        out = "\n".join(json.dumps(line) for line in self.lines[-40:])
        err = self.stderr.decode(errors="replace")[-4000:]
        return f"cclient {what} (exit code {self.exit_code})\n--- stdout (tail) ---\n{out}\n--- stderr (tail) ---\n{err}"

    def wait_for(self, predicate: Predicate, timeout: float = 60.0) -> defer.Deferred:
        """The first line (seen or future) for which C{predicate} is true."""
        for line in self.lines:
            if predicate(line):
                return defer.succeed(line)
        if self.ended:
            return defer.fail(CClientFailed(self.describe("ended without the awaited line")))
        d: defer.Deferred = defer.Deferred()
        pair = (predicate, d)
        self._waiters.append(pair)

        def on_timeout(result: Any, seconds: float) -> None:
            if pair in self._waiters:
                self._waiters.remove(pair)
            raise CClientFailed(self.describe(f"did not print the awaited line within {seconds} s"))

        d.addTimeout(timeout, self._reactor, onTimeoutCancel=on_timeout)
        return d

    def finished(self, timeout: float = 120.0) -> defer.Deferred:
        """Fires with the exit code once the client exits."""
        if self.ended:
            return defer.succeed(self.exit_code)
        d: defer.Deferred = defer.Deferred()
        self._ended.append(d)

        def on_timeout(result: Any, seconds: float) -> None:
            if d in self._ended:
                self._ended.remove(d)
            raise CClientFailed(self.describe(f"did not exit within {seconds} s"))

        d.addTimeout(timeout, self._reactor, onTimeoutCancel=on_timeout)
        return d

    def ensure_stopped(self) -> defer.Deferred:
        """Kill the client if it still runs; fires once it has exited (for cleanups)."""
        if self.ended:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._ended.append(d)
        try:
            self.transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass
        return d

    def events(self, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        """The event lines so far (of one kind if given)."""
        return [l for l in self.lines if "event" in l and (kind is None or l["event"] == kind)]

    def results(self, cmd: str) -> List[Dict[str, Any]]:
        """The result lines of command C{cmd} so far."""
        return [l for l in self.lines if l.get("cmd") == cmd]

    def timeouts_fired(self) -> List[Dict[str, Any]]:
        """The real libxl deadlines that fired (not ASAP modifies)."""
        return [l["timeout_fired"] for l in self.lines if "timeout_fired" in l]
