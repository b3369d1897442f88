"""The simulator's own cost per hypercall round trip (a benchmark, not a test).

Starts a hypercall server with N simulated domains in a child process,
loads the built shim into this process and times ``xc_domain_getinfolist``
through it: 1 row, 200 rows (libxl's death-scan batch) and 1024 rows
(``libxl_list_domain``'s batch).  Prints one JSON object: wall time per
call as the client sees it, and the server process's CPU time per call
(from ``/proc/<pid>/stat``).

Usage: ``python benchmarks/sim_costs.py [--domains 5000] [--calls 2000]``
(after ``pip install -e .`` has built the shim).
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAININFO_SIZE = 112  # sizeof(xc_domaininfo_t), domctl interface 0x15

SERVER = r"""
import sys
from twisted.internet import reactor
from txlibxl.sim.hypercalls import listen
from txlibxl.sim.hypervisor import HostInfo, Hypervisor
from txlibxl.sim.store import Store

path, count = sys.argv[1], int(sys.argv[2])
hv = Hypervisor(Store(), host=HostInfo(total_memory_kb=1 << 40))
for i in range(count):
    hv.create_domain("guest%d" % i, paused=(i % 2 == 0))
listen(reactor, hv, path)
reactor.callWhenRunning(lambda: (sys.stdout.write("ready\n"), sys.stdout.flush()))
reactor.run()
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(shim: ctypes.CDLL, xch: int, first: int, rows: int, calls: int,
            server_pid: int) -> Tuple[float, float]:
    buf = ctypes.create_string_buffer(DOMAININFO_SIZE * rows)
    fn = shim.xc_domain_getinfolist
    for _ in range(min(100, calls)):  # warm the row cache and the connection
        fn(xch, first, rows, buf)
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    for _ in range(calls):
        n = fn(xch, first, rows, buf)
        if n != rows:
            raise RuntimeError(f"getinfolist({first}, {rows}) returned {n}")
    wall, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    return wall / calls, cpu / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    found = sorted(glob.glob(os.path.join(ROOT, "txlibxl", "sim", "_xcshim*.so")))
    if not found:
        print("the shim is not built: run pip install -e .", file=sys.stderr)
        return 2
    shim = ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL, use_errno=True)
    shim.xc_interface_open.restype = ctypes.c_void_p
    shim.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    shim.xc_domain_getinfolist.restype = ctypes.c_int
    shim.xc_domain_getinfolist.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_void_p
    ]

    with tempfile.TemporaryDirectory(prefix="txsim-bench-") as tmp:
        path = os.path.join(tmp, "hypercall")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, path, str(args.domains)],
            stdout=subprocess.PIPE, env=env,
        )
        try:
            if server.stdout is None or server.stdout.readline().strip() != b"ready":
                print("the hypercall server did not start", file=sys.stderr)
                return 1
            os.environ["TXLIBXL_SIM_HYPERCALL"] = path
            xch = shim.xc_interface_open(None, None, 0)
            if not xch:
                print(f"xc_interface_open: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
                return 1
            results: Dict[str, Dict[str, float]] = {}
            middle = args.domains // 2
            for label, rows in (("getinfolist_1", 1), ("getinfolist_200", 200),
                                ("getinfolist_1024", 1024)):
                rows = min(rows, args.domains)
                wall, cpu = measure(shim, xch, middle - rows // 2 or 1, rows, args.calls,
                                    server.pid)
                results[label] = {
                    "rows": rows,
                    "wall_us_per_call": round(wall * 1e6, 2),
                    "server_cpu_us_per_call": round(cpu * 1e6, 2),
                }
        finally:
            server.terminate()
            server.wait()
    print(json.dumps({"domains": args.domains, "calls": args.calls, "results": results},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
