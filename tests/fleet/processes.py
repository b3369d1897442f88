"""
The fleet tests' processes: ``twistd libxl-events --amqp`` daemons on
simulated hosts, ``python -m txlibxl.fleet`` consumers, and the storms
that keep them busy.  Test support code, run on the test's reactor.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol

def reactor_name() -> str:
    """The test's reactor as twistd names it: epoll, poll, select, asyncio."""
    return type(reactor).__module__.rsplit(".", 1)[-1].replace("reactor", "")


CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def environment(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    env.update(extra or {})
    return env


class Child(ProcessProtocol):
    """A child process: its output tail, its end, and signals."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.status: Any = None

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-100000:]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.status = reason.value
        self.ended.callback(None)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def signal(self, name: str) -> None:
        if self.running:
            try:
                self.transport.signalProcess(name)
            except Exception:
                pass

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after C{grace} seconds; wait for the end."""
        if not self.running:
            return
        self.signal("TERM")
        timer = reactor.callLater(grace, self.signal, "KILL")
        await self.ended
        if timer.active():
            timer.cancel()

    async def kill(self) -> None:
        self.signal("KILL")
        await self.ended


def spawn(name: str, args: Sequence[str], env: Dict[str, str], path: str) -> Child:
    child = Child(name)
    reactor.spawnProcess(child, args[0], list(args), env=env, path=path)
    return child


async def wait_for_file(path: str, child: Child, timeout: float = 60.0, what: str = "") -> Dict[str, Any]:
    for _ in range(int(timeout / 0.1)):
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if not child.running:
            break
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"{child.name} did not become ready{what}:\n{child.output.decode(errors='replace')[-3000:]}")


class Daemon:
    """``twistd -n libxl-events --amqp`` on a running simulated host; restartable on the same state."""

    def __init__(self, tmp: str, name: str, host: Any, url: str, stream: str, exchange: str,
                 extra: Sequence[str] = ()) -> None:
        self.name = name
        self.host = host
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.url = url
        self.stream = stream
        self.exchange = exchange
        self.extra = list(extra)
        self.runs = 0
        self.child: Optional[Child] = None

    def args(self) -> List[str]:
        run = self.runs
        args = TWISTD + [
            "-n", "--pidfile=", f"--reactor={reactor_name()}", "--logfile", os.path.join(self.dir, f"twistd-{run}.log"),
            "libxl-events", "--host-name", self.name, "--amqp", self.url,
            "--amqp-stream", self.stream, "--amqp-exchange", self.exchange,
            "--amqp-spool", os.path.join(self.dir, "spool"),
            "--output", os.path.join(self.dir, f"records-{run}.jsonl"),
            "--ready-file", os.path.join(self.dir, f"ready-{run}.json"),
            "--rescan-interval", "2",
        ]
        if state_dir_supported():
            args += ["--state-dir", os.path.join(self.dir, "state")]
        return args + self.extra

    async def start(self) -> "Daemon":
        self.child = spawn(f"daemon {self.name}", self.args(), environment(self.host.environment(preload=True)), self.dir)
        await wait_for_file(os.path.join(self.dir, f"ready-{self.runs}.json"), self.child, what=f" ({self.log()})")
        self.runs += 1
        return self

    def log(self, run: Optional[int] = None) -> str:
        run = self.runs - 1 if run is None else run
        try:
            with open(os.path.join(self.dir, f"twistd-{max(0, run)}.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def records(self) -> List[Dict[str, Any]]:
        """Every record the daemon's runs wrote as JSON lines (the truth to compare with)."""
        out = []
        for run in range(self.runs):
            try:
                with open(os.path.join(self.dir, f"records-{run}.jsonl")) as f:
                    out += [json.loads(line) for line in f if line.endswith("\n")]
            except FileNotFoundError:
                pass
        return out


def state_dir_supported() -> bool:
    """Whether ``twistd libxl-events`` has ``--state-dir`` (its seq survives restarts)."""
    from txlibxl.daemon.tap import Options

    return "state-dir" in dict(Options())


class Consumer:
    """``python -m txlibxl.fleet``, restartable on the same state and output."""

    def __init__(self, tmp: str, url: str, stream: str) -> None:
        self.dir = os.path.join(tmp, "consumer")
        os.makedirs(self.dir, exist_ok=True)
        self.url = url
        self.stream = stream
        self.output = os.path.join(self.dir, "records.jsonl")
        self.runs = 0
        self.child: Optional[Child] = None
        self.address: Optional[str] = None

    async def start(self) -> "Consumer":
        ready = os.path.join(self.dir, f"ready-{self.runs}.json")
        args = [sys.executable, "-m", "txlibxl.fleet", "--amqp", self.url, "--stream", self.stream,
                "--state-dir", os.path.join(self.dir, "state"), "--output", self.output,
                "--listen", "tcp:0:interface=127.0.0.1", "--ready-file", ready, "--reactor", reactor_name()]
        self.child = spawn("consumer", args, environment(), self.dir)
        info = await wait_for_file(ready, self.child)
        self.address = info["listen"]
        self.runs += 1
        return self

    def records(self) -> List[Dict[str, Any]]:
        try:
            with open(self.output) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []


async def storm(control: Any, prefix: str, rounds: int = 5, size: int = 40, pause: float = 0.3) -> int:
    """
    Domains created, half of them shut down, all destroyed, C{rounds}
    times: about C{rounds * size * 2.5} records.  Returns the domains made.
    """
    made = 0
    reasons = ("reboot", "poweroff", "crash", "suspend")
    for r in range(rounds):
        created = await control.create_domains(count=size, prefix=f"{prefix}r{r}d")
        domids = [d["domid"] for d in created]
        made += len(domids)
        await task.deferLater(reactor, pause, lambda: None)
        await defer.gatherResults([control.shutdown(domid, reasons[i % 4]) for i, domid in enumerate(domids[::2])])
        await task.deferLater(reactor, pause, lambda: None)
        await control.destroy(domids, mode="rate", rate=200)
    return made
