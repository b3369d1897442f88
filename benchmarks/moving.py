"""
``python -m benchmarks.moving``: save, restore and live migration of a
domain with a large simulated memory image (1 GiB by default), on
simulated hosts.

* **save and restore**: txlibxl (:meth:`~txlibxl.context.Context.save`,
  :meth:`~txlibxl.context.Context.restore`, in
  ``benchmarks/movingclient.py`` on the epoll reactor) against Debian's
  ``xl save`` / ``xl restore -e`` on the same host, the same domain.  Both
  run libxl's same save helper, so the ratio is what txlibxl's event loop
  costs or saves over xl's own.  txlibxl's time is the operation's (from
  the call to its Deferred firing); xl's is its process's, whose start-up
  is a few milliseconds of a run of seconds.
* **migration**: txlibxl's live migration from host A to host B and back,
  over a unix socket, as bytes per second of the live stream's size (a
  live checkpoint into a file, measured once), against the loopback copy
  limit: the same byte count sent through a
  plain unix socket (``socketpair``, one thread writing 1 MiB blocks, one
  reading) in the benchmark's process; and against what libxl alone
  produces: a live checkpoint of the domain into a pipe that a thread of
  txlibxl's client drains (the migration's source side without the
  connection and the target).

The two sides alternate (xl first in odd repetitions, txlibxl in even
ones; migration and the plain copy likewise), ``--reps`` times each;
medians and (min-max) spreads, the load average before and after.

    .venv/bin/python -m benchmarks.moving [--image-mb 1024] [--reps 5]

writes ``benchmarks/results/moving.json`` and the docs' table
``docs/performance/moving.inc``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, protocol, task, utils

from .runner import ROOT, BenchmarkError, machine, write_json

DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "moving.json")
DEFAULT_INC = os.path.join(ROOT, "docs", "performance", "moving.inc")
XL = "/usr/lib/xen-4.17/bin/xl"
HELPER = "/usr/lib/xen-4.17/bin/libxl-save-helper"


class BenchmarkUnavailable(Exception):
    """What the benchmark needs is not installed."""


class _Client(protocol.ProcessProtocol):
    """``benchmarks.movingclient`` on one host: requests answered in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buffer = b""
        self.stderr = b""
        self.waiting: Dict[int, defer.Deferred] = {}
        self.next_id = 0
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            reply = json.loads(line)
            self.waiting.pop(reply["id"]).callback(reply)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        for d in self.waiting.values():
            d.errback(BenchmarkError(f"{self.name} ended: {self.stderr.decode(errors='replace')[-2000:]}"))
        self.waiting = {}

    async def call(self, cmd: str, **args: Any) -> Dict[str, Any]:
        self.next_id += 1
        d = self.waiting[self.next_id] = defer.Deferred()
        self.transport.write(json.dumps(dict(args, cmd=cmd, id=self.next_id)).encode() + b"\n")
        reply = await d
        if "error" in reply:
            raise BenchmarkError(f"{self.name} {cmd}: {reply['error']}")
        return reply


def _spawn(reactor: Any, name: str, host: Any) -> _Client:
    client = _Client(name)
    env = dict(os.environ)
    for key in ("XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT", "LD_PRELOAD"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    reactor.spawnProcess(client, sys.executable, [sys.executable, "-m", "benchmarks.movingclient", host.rundir],
                         env=env, path=ROOT)
    return client


def guest_config(directory: str, image_kb: int) -> Dict[str, Any]:
    """The PV guest that moves (no devices: what moves is its memory)."""
    kernel = os.path.join(directory, "vmlinuz")
    with open(kernel, "wb") as f:
        f.write(b"\x7fELF simulated kernel")
    memory = max(131072, image_kb + 65536)
    return {
        "c_info": {"type": "pv", "name": "mover"},
        "b_info": {"max_vcpus": 1, "max_memkb": memory, "target_memkb": memory, "kernel": kernel, "type.pv": {}},
    }


async def _xl(reactor: Any, host: Any, *args: str) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(host.environment(preload=True))
    started = time.monotonic()
    out, err, code = await utils.getProcessOutputAndValue(XL, list(args), env=env, reactor=reactor)
    elapsed = time.monotonic() - started
    if code != 0:
        raise BenchmarkError(f"xl {' '.join(args)} failed ({code}): {err.decode(errors='replace')}")
    return elapsed


def socket_copy(nbytes: int, block: int = 1 << 20) -> float:
    """Seconds to send C{nbytes} through a unix socketpair, read on a thread."""
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = [0]

    def read() -> None:
        buf = bytearray(block)
        while received[0] < nbytes:
            n = b.recv_into(buf)
            if not n:
                break
            received[0] += n

    reader = threading.Thread(target=read)
    data = b"\x5a" * block
    started = time.monotonic()
    reader.start()
    left = nbytes
    while left > 0:
        a.sendall(data[: min(block, left)])
        left -= block
    reader.join()
    elapsed = time.monotonic() - started
    a.close()
    b.close()
    if received[0] != nbytes:
        raise BenchmarkError(f"the plain copy moved {received[0]} of {nbytes} bytes")
    return elapsed


def _spread(values: Sequence[float]) -> Dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


async def measure(reactor: Any, image_kb: int, reps: int, progress: Any = print) -> Dict[str, Any]:
    if not (os.access(XL, os.X_OK) and os.access(HELPER, os.X_OK)):
        raise BenchmarkUnavailable(f"{XL} and {HELPER} are needed (Debian's xen-utils-4.17)")
    from txlibxl.testing import start_simulated_host

    started = time.time()
    load_before = list(os.getloadavg())
    directory = tempfile.mkdtemp(prefix="txlx-moving-bench-")
    sockets = tempfile.mkdtemp(prefix="txmb", dir="/tmp")
    a = await start_simulated_host(reactor)
    b = await start_simulated_host(reactor)
    ca, cb = _spawn(reactor, "host A's client", a), _spawn(reactor, "host B's client", b)
    runs: Dict[str, List[float]] = {"xl_save_s": [], "xl_restore_s": [], "txlibxl_save_s": [],
                                    "txlibxl_restore_s": [], "migration_s": [], "copy_s": [], "pipe_save_s": []}
    stream_bytes: List[int] = []
    try:
        into_a, into_b = os.path.join(sockets, "a.sock"), os.path.join(sockets, "b.sock")
        await ca.call("listen", unix=into_a)
        await cb.call("listen", unix=into_b)
        config = guest_config(directory, image_kb)
        domid = (await ca.call("create", config=config, image_kb=image_kb))["domid"]
        saved = (await ca.call("config", domid=domid))["config"]
        path = os.path.join(directory, "mover.save")
        # What a migration carries: a live save's stream (its rounds send
        # pages again), measured once by a live checkpoint into a file.
        await ca.call("save", domid=domid, path=path, live=True, then="resume")
        live_bytes = os.path.getsize(path)
        os.unlink(path)

        async def with_xl() -> None:
            runs["xl_save_s"].append(await _xl(reactor, a, "save", "mover", path))
            stream_bytes.append(os.path.getsize(path))
            runs["xl_restore_s"].append(await _xl(reactor, a, "restore", "-e", path))
            os.unlink(path)

        async def with_txlibxl() -> None:
            nonlocal domid
            [current] = [d for d in await a.control.list() if d["name"] == "mover"]
            runs["txlibxl_save_s"].append((await ca.call("save", domid=current["domid"], path=path))["t"])
            reply = await ca.call("restore", config=saved, path=path)
            runs["txlibxl_restore_s"].append(reply["t"])
            domid = reply["domid"]
            os.unlink(path)

        async def migration() -> None:
            [current] = [d for d in await a.control.list() if d["name"] == "mover"]
            there = await ca.call("migrate", domid=current["domid"], endpoint=f"unix:path={into_b}")
            back = await cb.call("migrate", domid=there["domid"], endpoint=f"unix:path={into_a}")
            runs["migration_s"] += [there["t"], back["t"]]

        async def copy() -> None:
            runs["copy_s"].append(socket_copy(live_bytes))
            [current] = [d for d in await a.control.list() if d["name"] == "mover"]
            reply = await ca.call("save_to_pipe", domid=current["domid"])
            if reply["bytes"] != live_bytes:
                raise BenchmarkError(f"a live save into a pipe carried {reply['bytes']} bytes, not {live_bytes}")
            runs["pipe_save_s"].append(reply["t"])

        for rep in range(reps):
            progress(f"moving: repetition {rep + 1}/{reps} ({image_kb // 1024} MiB image)")
            pairs = [(with_xl, with_txlibxl), (migration, copy)]
            for first, second in pairs:
                order = (first, second) if rep % 2 == 0 else (second, first)
                for step in order:
                    await step()
        [current] = [d for d in await a.control.list() if d["name"] == "mover"]
        info = await a.control.info(current["domid"])
        if info["image_kb"] != image_kb:
            raise BenchmarkError(f"the image came back as {info['image_kb']} KiB, not {image_kb}")
        await ca.call("destroy", domid=current["domid"])
    finally:
        for client in (ca, cb):
            if not client.ended.called:
                try:
                    await client.call("stop")
                except BenchmarkError:
                    pass
                await client.ended
        await a.stop()
        await b.stop()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)
    nbytes = int(statistics.median(stream_bytes))
    out: Dict[str, Any] = {key: _spread(values) for key, values in runs.items()}
    nbytes_live = live_bytes
    for key in runs:
        out[key]["runs"] = [round(v, 4) for v in runs[key]]
    out["save_ratio"] = round(out["txlibxl_save_s"]["median"] / out["xl_save_s"]["median"], 3)
    out["restore_ratio"] = round(out["txlibxl_restore_s"]["median"] / out["xl_restore_s"]["median"], 3)
    out["migration_bytes_per_s"] = round(nbytes_live / out["migration_s"]["median"])
    out["copy_bytes_per_s"] = round(nbytes_live / out["copy_s"]["median"])
    out["migration_to_copy_ratio"] = round(out["migration_bytes_per_s"] / out["copy_bytes_per_s"], 4)
    out["pipe_save_bytes_per_s"] = round(nbytes_live / out["pipe_save_s"]["median"])
    out["migration_to_pipe_save_ratio"] = round(out["migration_bytes_per_s"] / out["pipe_save_bytes_per_s"], 4)
    return {
        "schema": 1,
        "scenario": "moving",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "method": (
            "one PV domain with a simulated memory image on host A: xl save + xl restore -e and txlibxl's "
            "save + restore alternate; txlibxl's live migration A->B and B->A over unix sockets alternates "
            "with a plain socketpair copy of the live stream's byte count"
        ),
        "image_kb": image_kb,
        "stream_bytes": nbytes,
        "live_stream_bytes": nbytes_live,
        "reps": reps,
        "machine": dict(machine(), load_before=load_before, load=list(os.getloadavg())),
        "elapsed_s": round(time.time() - started, 1),
        "results": out,
    }


def render_inc(results: Dict[str, Any]) -> str:
    """The docs' table of a run."""
    r = results["results"]
    before = ", ".join(f"{x:.2f}" for x in results["machine"]["load_before"])
    after = ", ".join(f"{x:.2f}" for x in results["machine"]["load"])

    def cell(key: str) -> str:
        s = r[key]
        return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    mib = results["stream_bytes"] / (1 << 20)
    live = results["live_stream_bytes"] / (1 << 20)
    lines = [
        f"A {results['image_kb'] // 1024} MiB simulated memory image ({mib:.0f} MiB saved, {live:.0f} MiB "
        "migrated: a live save's rounds send pages again), "
        f"{results['reps']} repetitions, alternating; {results['machine']['cpus']} CPUs, load average "
        f"{before} before and {after} after.  Seconds: medians, (min-max).",
        "",
        ".. list-table:: Save, restore and live migration of one PV domain",
        "   :header-rows: 1",
        "",
        "   * - ",
        "     - baseline",
        "     - txlibxl",
        "     - txlibxl / baseline",
        "   * - save (baseline: ``xl save``)",
        f"     - {cell('xl_save_s')}",
        f"     - {cell('txlibxl_save_s')}",
        f"     - **{r['save_ratio']:.2f}**",
        "   * - restore (baseline: ``xl restore``)",
        f"     - {cell('xl_restore_s')}",
        f"     - {cell('txlibxl_restore_s')}",
        f"     - **{r['restore_ratio']:.2f}**",
        "   * - migration (baseline: a plain socket copy of the stream)",
        f"     - {cell('copy_s')}: {r['copy_bytes_per_s'] / (1 << 20):.0f} MiB/s",
        f"     - {cell('migration_s')}: {r['migration_bytes_per_s'] / (1 << 20):.0f} MiB/s",
        f"     - **{r['migration_to_copy_ratio']:.3f}** of the copy's rate",
        "   * - migration (baseline: libxl's live save into a pipe, drained)",
        f"     - {cell('pipe_save_s')}: {r['pipe_save_bytes_per_s'] / (1 << 20):.0f} MiB/s",
        f"     - {cell('migration_s')}: {r['migration_bytes_per_s'] / (1 << 20):.0f} MiB/s",
        f"     - **{r['migration_to_pipe_save_ratio']:.3f}** of the live save's rate",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.moving", description=__doc__.split("\n")[1])
    p.add_argument("--image-mb", type=int, default=1024, help="the simulated memory image, MiB (1024)")
    p.add_argument("--reps", type=int, default=5, help="repetitions, alternating (5)")
    p.add_argument("--out", default=DEFAULT_OUT, help="the JSON results file")
    p.add_argument("--docs", default=DEFAULT_INC, help="the docs' table ('' to skip)")
    args = p.parse_args(argv)

    async def run(reactor: Any) -> None:
        results = await measure(reactor, args.image_mb * 1024, args.reps, lambda t: print(t, file=sys.stderr))
        write_json(results, args.out)
        if args.docs:
            with open(args.docs, "w") as f:
                f.write(render_inc(results))
        print(render_inc(results))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
