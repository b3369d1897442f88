"""
``make demo``: ``twistd libxl-events`` on a simulated Xen host while the
demo scenario plays, each record printed as a JSON line as it happens;
it stops as soon as the scenario is over and its records are out.

    python contrib/demo.py [--scenario NAME-OR-FILE] [--twistd PATH] [--logfile PATH] [--timeout SECONDS]

1. twistd runs ``libxl-events --simulate --simulate-rundir DIR --disk-eject
   --output - --ready-file FILE``: a simulated host with Domain-0 only, and
   the daemon's records on its standard output, copied to ours.
2. Once the ready file says the daemon runs, the scenario is played through
   the host's control socket (:class:`txlibxl.sim.scenario.ScenarioRunner`
   over a :class:`txlibxl.sim.control.ControlClient`), so this script knows
   when its last step is done, without guessing its length.
3. Then it waits for the records that step causes: every domain the host
   no longer has must have its ``death`` record.  Then SIGTERM, and the
   daemon stops cleanly.

Exit status 0, or 1 (with the end of twistd's log) if twistd failed, the
scenario failed, or ``--timeout`` passed first.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional, Set

from twisted.internet import defer, protocol, task

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Daemon(protocol.ProcessProtocol):
    """twistd: its records copied to our stdout as they come, and its end."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._partial = b""
        self.records: List[Dict[str, Any]] = []
        self.ended: defer.Deferred = defer.Deferred()
        self.changed: Optional[defer.Deferred] = None

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._out.write(line.decode("utf-8", "replace") + "\n")
            self._out.flush()
            try:
                self.records.append(json.loads(line))
            except ValueError:
                continue
            waiting, self.changed = self.changed, None
            if waiting is not None:
                waiting.callback(None)

    def errReceived(self, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)
        waiting, self.changed = self.changed, None
        if waiting is not None:
            waiting.errback(RuntimeError(f"twistd exited: {reason.value}"))

    def next_record(self) -> defer.Deferred:
        if self.changed is None:
            self.changed = defer.Deferred()
        return self.changed


async def _wait_for_file(reactor: Any, path: str, daemon: Daemon) -> Dict[str, Any]:
    while not os.path.exists(path):
        if daemon.ended.called:
            raise RuntimeError("twistd exited before it was ready")
        await task.deferLater(reactor, 0.05, lambda: None)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _caught_up(records: List[Dict[str, Any]], created: Set[int], on_host: Set[int]) -> bool:
    """
    Every domain the scenario created (C{created}) or the daemon saw that
    the host no longer has (C{on_host}) has its death record.
    """
    seen = {(r["domid"], r["uuid"]) for r in records if r.get("type") == "new"}
    dead = {(r["domid"], r["uuid"]) for r in records if r.get("type") == "death"}
    dead_domids = {domid for domid, _ in dead}
    return all(key in dead for key in seen if key[0] not in on_host) and (created - on_host) <= dead_domids


async def play(reactor: Any, args: argparse.Namespace) -> None:
    from txlibxl.sim.control import ControlClient
    from txlibxl.sim.scenario import ScenarioRunner, load
    from txlibxl.testing.scenarios import scenario_path

    scenario = load(scenario_path(args.scenario))
    workdir = tempfile.mkdtemp(prefix="txlibxl-demo-")
    ready = os.path.join(workdir, "ready.json")
    argv = [
        args.twistd, "-n", "--pidfile=", f"--logfile={args.logfile}",
        "libxl-events", "--simulate", "--simulate-rundir", os.path.join(workdir, "host"),
        "--disk-eject", "--output", "-", "--ready-file", ready,
    ]  # fmt: skip
    daemon = Daemon(sys.stdout)
    process = reactor.spawnProcess(daemon, argv[0], argv, env=dict(os.environ), path=CHECKOUT)
    client = None
    try:
        info = await _wait_for_file(reactor, ready, daemon)
        with open(os.path.join(info["simulate_rundir"], "host.json"), encoding="utf-8") as f:
            host = json.load(f)
        client = await ControlClient.connect(reactor, host["control"])
        player = ScenarioRunner(reactor, lambda op, a: client.call(op, **a))
        await player.run(scenario)
        # The scenario is over; the daemon publishes what its last steps did.
        while True:
            on_host = {d["domid"] for d in await client.list()}
            if _caught_up(daemon.records, set(player.names.values()), on_host):
                break
            await daemon.next_record()
    finally:
        if client is not None:
            await client.disconnect()
        stopped = not daemon.ended.called
        if stopped:
            process.signalProcess(signal.SIGTERM)
        end = await daemon.ended
        shutil.rmtree(workdir, ignore_errors=True)
    # Killed by the SIGTERM it was sent: twistd's clean stop.
    if not (stopped and getattr(end, "signal", None) == signal.SIGTERM):
        raise RuntimeError(f"twistd ended unexpectedly: {end}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--scenario", default="demo", help="a shipped scenario's name or a scenario file")
    parser.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    parser.add_argument("--logfile", default=os.path.join(CHECKOUT, ".demo.log"), help="twistd's own log")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    async def run(reactor: Any) -> None:
        d = defer.ensureDeferred(play(reactor, args))
        d.addTimeout(args.timeout, reactor)
        try:
            await d
        except Exception as e:
            sys.stderr.write(f"demo failed: {e!r}\n")
            try:
                with open(args.logfile, errors="replace") as f:
                    sys.stderr.writelines(f.readlines()[-20:])
            except OSError:
                pass
            raise SystemExit(1)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
