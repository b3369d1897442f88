"""
``python -m benchmarks.fleet``: records per second end to end through a
fleet, with the CPU each part spent.

Three simulated hosts, each with its ``twistd libxl-events --amqp``,
publish to a three-node RabbitMQ cluster on loopback (the stream
replicated on all three) read by one ``python -m txlibxl.fleet``.  Each
host then runs a storm: ``--domains`` domains created at once, then all
destroyed in one burst.  Measured: the wall time from the storm's start
until the consumer has written every record the daemons wrote, the records
per second that makes, the destroy phase on its own (from the burst to
the consumer's last death), and the CPU seconds (user + system, from
``/proc``) of the broker nodes, the publishers, the simulated hosts and
the consumer over the run; then a fresh consumer reads the whole stream
again from its start (``replay``: the reading side with nothing upstream
limiting it, process start-up included).  The results go to
``benchmarks/results/fleet.json`` (``docs/performance.rst`` shows them).

A benchmark, not a test: run it on a quiet machine, once.  It needs
Debian's ``rabbitmq-server`` (``make build`` installs it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

from twisted.internet import defer, task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fleet.broker import BrokerCluster  # noqa: E402
from tests.fleet.processes import Consumer, Daemon  # noqa: E402

OUT = os.path.join(ROOT, "benchmarks", "results", "fleet.json")
HOSTS = ("xen1", "xen2", "xen3")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of C{pids} (and their waited-for children) so far."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / TICK
    return total


def loadavg() -> List[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


async def run(reactor: Any, domains: int, window: int) -> Dict[str, Any]:
    from txlibxl.testing.simhost import start_simulated_host

    tmp = tempfile.mkdtemp(prefix="txlibxl-bench-fleet-")
    cluster = BrokerCluster(3)
    cluster.start()
    hosts: List[Any] = []
    daemons: List[Daemon] = []
    consumer = None
    try:
        for _ in HOSTS:
            hosts.append(await start_simulated_host(reactor))
        url = cluster.url()
        daemons = [Daemon(tmp, n, h, url, "bench", "bench", extra=["--amqp-window", str(window)])
                   for n, h in zip(HOSTS, hosts)]
        for d in daemons:
            await d.start()
        consumer = await Consumer(tmp, cluster.url((3, 2, 1)), "bench").start()

        def groups() -> Dict[str, List[int]]:
            return {
                "broker": [p for n in cluster.nodes for p in n.pids()],
                "publishers": [d.child.transport.pid for d in daemons],
                "simulated_hosts": [h.info["pid"] for h in hosts],
                "consumer": [consumer.child.transport.pid],
            }

        async def caught_up(timeout: float = 600.0) -> float:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                truth = {(r["host"], r["seq"]) for d in daemons for r in d.records()}
                got = {(r["host"], r["seq"]) for r in consumer.records()}
                if truth <= got and len(truth) >= expected[0]:
                    return time.monotonic()
                await task.deferLater(reactor, 0.05, lambda: None)
            raise RuntimeError("the consumer did not catch up")

        await task.deferLater(reactor, 1.0, lambda: None)
        before = {k: cpu_seconds(v) for k, v in groups().items()}
        load_before = loadavg()
        expected = [len(daemons) * (domains + 1)]
        start = time.monotonic()
        created = await defer.gatherResults([h.control.create_domains(count=domains, prefix="b") for h in hosts])
        created_at = await caught_up()
        expected[0] = len(daemons) * (2 * domains + 1)
        burst = time.monotonic()
        await defer.gatherResults([h.control.destroy([d["domid"] for d in c], mode="burst") for h, c in zip(hosts, created)])
        end = await caught_up()
        after = {k: cpu_seconds(v) for k, v in groups().items()}
        records = len(consumer.records())
        # The stream read again from the start by a fresh consumer: what
        # the reading side does when nothing upstream limits it.
        replayer = Consumer(os.path.join(tmp, "replay"), cluster.url((2, 3, 1)), "bench")
        replay_start = time.monotonic()
        await replayer.start()
        while len(replayer.records()) < records:
            await task.deferLater(reactor, 0.05, lambda: None)
        replay_s = time.monotonic() - replay_start
        replay_cpu = cpu_seconds([replayer.child.transport.pid])
        await replayer.child.stop(grace=10)
        return {
            "schema": 1,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                        "loadavg_before": load_before, "loadavg_after": loadavg()},
            "config": {"hosts": len(HOSTS), "domains_per_host": domains, "broker_nodes": 3, "stream_replicas": 3,
                       "window": window},
            "records": records,
            "wall_s": round(end - start, 3),
            "records_per_s": round(records / (end - start), 1),
            "create_phase_s": round(created_at - start, 3),
            "destroy_phase_s": round(end - burst, 3),
            "destroy_records_per_s": round(len(HOSTS) * domains / (end - burst), 1),
            "cpu_s": {k: round(after[k] - before[k], 2) for k in after},
            "replay_s": round(replay_s, 3),
            "replay_records_per_s": round(records / replay_s, 1),
            "replay_consumer_cpu_s": round(replay_cpu, 2),
        }
    finally:
        if consumer is not None and consumer.child is not None:
            await consumer.child.stop(grace=10)
        for d in daemons:
            if d.child is not None:
                await d.child.stop(grace=10)
        for h in hosts:
            await h.stop()
        cluster.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _write(result: Dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result, indent=1))


def main(argv: Any = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description="end-to-end fleet throughput")
    p.add_argument("--domains", type=int, default=1000, help="domains per host's storm (1000)")
    p.add_argument("--window", type=int, default=500, help="the publishers' in-flight window (500)")
    p.add_argument("--out", default=OUT, help="where the JSON results go (benchmarks/results/fleet.json)")
    args = p.parse_args(argv)

    def go(reactor: Any) -> defer.Deferred:
        d = defer.ensureDeferred(run(reactor, args.domains, args.window))
        d.addCallback(_write, args.out)
        return d

    task.react(go)


if __name__ == "__main__":
    main()
