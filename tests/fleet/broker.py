"""
Real RabbitMQ nodes on loopback for the tests: :class:`BrokerCluster`.

It installs nothing: it runs Debian's ``rabbitmq-server`` (installed by
``make build``) as child processes, each node with its own name
(``fN@localhost``), AMQP port, distribution port, data and log
directories, one shared Erlang cookie and one private ``epmd``, every
listener on 127.0.0.1 but the stream replication listeners (see
:meth:`BrokerCluster.non_loopback_sockets`).  Nodes after the first join
the first through classic peer discovery, once it has booted.  :meth:`BrokerCluster.stop`
leaves no process behind.

Everything here blocks (``subprocess``): use it from ``setUpClass`` /
``tearDownClass`` or from a thread, never from the reactor thread while
the reactor is needed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["BrokerCluster", "BrokerNode", "BrokerUnavailable", "broker_available"]

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
STREAMS = "/usr/lib/rabbitmq/bin/rabbitmq-streams"
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


class BrokerUnavailable(Exception):
    """RabbitMQ is not installed here, or would not start: the message says which."""


def broker_available() -> Optional[str]:
    """``None`` if the nodes can be run here, else why not."""
    for path in (SERVER, CTL):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: install Debian's rabbitmq-server (make build does)"
    if shutil.which("epmd") is None and not _epmd_binary():
        return "no epmd (Erlang's port mapper) found"
    return None


def _epmd_binary() -> Optional[str]:
    found = shutil.which("epmd")
    if found:
        return found
    for root in ("/usr/lib/erlang/bin", "/usr/lib/erlang/erts-13.1.5/bin"):
        candidate = os.path.join(root, "epmd")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_ports(count: int) -> List[int]:
    """C{count} distinct TCP ports free on 127.0.0.1 just now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _free_range(width: int) -> Tuple[int, int]:
    """A run of C{width} ports with none listening on 127.0.0.1 now (for osiris)."""
    base = 20000 + (os.getpid() * 37) % 20000
    for start in range(base, base + 20000, width):
        start = 20000 + (start - 20000) % 40000
        ok = True
        for port in range(start, start + width, max(1, width // 8)):
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start, start + width - 1
    raise BrokerUnavailable("no free port range for stream replication")


class BrokerNode:
    """One ``rabbitmq-server`` process and its directories."""

    def __init__(self, cluster: "BrokerCluster", index: int, amqp_port: int, dist_port: int) -> None:
        self.cluster = cluster
        self.index = index
        self.short = f"f{index}"
        self.name = f"f{index}@localhost"
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.base = os.path.join(cluster.root, self.short)
        self.process: Optional[subprocess.Popen] = None
        os.makedirs(os.path.join(self.base, "log"), exist_ok=True)
        os.makedirs(os.path.join(self.base, "mnesia"), exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            "log.console = false",
            "log.file.level = info",
        ]
        if self.index > 1:
            lines += [
                "cluster_formation.peer_discovery_backend = classic_config",
                f"cluster_formation.classic_config.nodes.1 = {self.cluster.nodes[0].name if self.cluster.nodes else 'f1@localhost'}",
                "cluster_formation.discovery_retry_limit = 60",
            ]
        with open(os.path.join(self.base, "rabbitmq.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        low, high = self.cluster.osiris_range
        with open(os.path.join(self.base, "advanced.config"), "w") as f:
            f.write(f"[{{osiris,[{{port_range,{{{low},{high}}}}}]}}].\n")
        with open(os.path.join(self.base, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        open(os.path.join(self.base, "rabbitmq-env.conf"), "w").close()

    def environment(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(self.cluster.cli_environment())
        env.update(
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=os.path.join(self.base, "rabbitmq-env.conf"),
            RABBITMQ_MNESIA_BASE=os.path.join(self.base, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.base, "log"),
            RABBITMQ_CONFIG_FILE=os.path.join(self.base, "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(self.base, "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.base, "enabled_plugins"),
            RABBITMQ_PID_FILE=os.path.join(self.base, "pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=LOOPBACK_DIST,
        )
        return env

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the node (returns at once; see :meth:`wait_ready`)."""
        if self.running:
            return
        out = open(os.path.join(self.base, "server.out"), "ab")
        self.process = subprocess.Popen(
            [SERVER], env=self.environment(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=self.base, start_new_session=True,
        )
        out.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """
        Until the AMQP port answers and the node says it has booted.

        :raises BrokerUnavailable: the node exited or took too long.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise BrokerUnavailable(f"RabbitMQ node {self.name} exited:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"RabbitMQ node {self.name} did not listen within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)
        rc, out = self.cluster.ctl(self, "-q", "await_startup", timeout=max(5.0, deadline - time.monotonic()))
        if rc != 0:
            raise BrokerUnavailable(f"RabbitMQ node {self.name} did not boot (rc {rc}): {out}\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the node's whole process group, and wait for it."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the node cleanly (``rabbitmqctl stop``), killing it if it lingers."""
        if not self.running:
            self.kill()
            return
        self.cluster.ctl(self, "-q", "stop", timeout=timeout)
        try:
            self.process.wait(timeout=timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def pids(self) -> List[int]:
        """Every live process of the node's process group."""
        if self.process is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == self.process.pid:
                        found.append(int(entry))
                except OSError:
                    pass
        return found

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for name in ("server.out", os.path.join("log", f"{self.name}.log")):
            try:
                with open(os.path.join(self.base, name), errors="replace") as f:
                    texts.append("".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(texts)


class BrokerCluster:
    """
    C{size} RabbitMQ nodes in a cluster under a temporary directory.

    :raises BrokerUnavailable: from :meth:`start`, when RabbitMQ is not
        installed or the nodes would not start (they are stopped then).
    """

    def __init__(self, size: int = 3, root: Optional[str] = None) -> None:
        why = broker_available()
        if why is not None:
            raise BrokerUnavailable(why)
        self.root = root or tempfile.mkdtemp(prefix="txlibxl-rabbit-")
        ports = free_ports(1 + 2 * size)
        self.epmd_port = ports[0]
        self.osiris_range = _free_range(200)
        self.home = os.path.join(self.root, "home")
        os.makedirs(self.home, exist_ok=True)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write("TXLIBXLFLEETTESTCOOKIE%d" % os.getpid())
        os.chmod(cookie, 0o400)
        self.nodes: List[BrokerNode] = []
        for i in range(size):
            self.nodes.append(BrokerNode(self, i + 1, ports[1 + 2 * i], ports[2 + 2 * i]))
        self._epmd: Optional[subprocess.Popen] = None

    def cli_environment(self) -> Dict[str, str]:
        return {
            "HOME": self.home,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_DIST,
        }

    def ctl(self, node: BrokerNode, *args: str, tool: str = CTL, timeout: float = 30.0) -> Tuple[int, str]:
        """Run ``rabbitmqctl -n NODE ARGS`` (or another CLI tool); its exit code and output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(self.cli_environment())
        try:
            done = subprocess.run([tool, "-n", node.name, *args], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout} s"
        return done.returncode, (done.stdout + done.stderr).strip()

    # -- life ----------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> "BrokerCluster":
        """
        Start the first node, then the others in parallel; return once all
        have booted and joined.  (Started all at once, a joiner can check
        its schema while the first node is still enabling its feature
        flags, and stop with ``schema_integrity_check_failed``: seen here.)
        """
        try:
            epmd = _epmd_binary()
            self._epmd = subprocess.Popen([epmd, "-address", "127.0.0.1", "-port", str(self.epmd_port)],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
            self.nodes[0].start()
            self.nodes[0].wait_ready(timeout)
            for node in self.nodes[1:]:
                node.start()
            for node in self.nodes[1:]:
                node.wait_ready(timeout)
            self.wait_clustered(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_clustered(self, timeout: float = 60.0) -> None:
        """Until the first node counts every node as running."""
        deadline = time.monotonic() + timeout
        want = sorted(n.name for n in self.nodes)
        running: List[str] = []
        while time.monotonic() < deadline:
            rc, out = self.ctl(self.nodes[0], "cluster_status", "--formatter", "json")
            if rc == 0:
                try:
                    running = sorted(json.loads(out).get("running_nodes", []))
                except ValueError:
                    running = []
                if running == want:
                    return
            time.sleep(0.5)
        raise BrokerUnavailable(f"the cluster did not form: running {running}, wanted {want}")

    def stop(self) -> None:
        """Stop every node and the private epmd; remove the directory."""
        for node in self.nodes:
            if node.running:
                node.cluster.ctl(node, "-q", "stop", timeout=20)
        for node in self.nodes:
            node.stop()
        if self._epmd is not None:
            try:
                os.killpg(self._epmd.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._epmd.wait()
            self._epmd = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -- looking at it -------------------------------------------------------

    def url(self, order: Sequence[int] = ()) -> str:
        """``amqp://guest:guest@127.0.0.1:P1,...``, nodes in C{order} (indexes from 1) or as started."""
        nodes = [self.nodes[i - 1] for i in order] if order else self.nodes
        return "amqp://guest:guest@" + ",".join(f"127.0.0.1:{n.amqp_port}" for n in nodes) + "/"

    def node_named(self, name: str) -> BrokerNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def stream_leader(self, stream: str, timeout: float = 30.0) -> BrokerNode:
        """The node leading C{stream} now (asked of any running node)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.running:
                    continue
                rc, out = self.ctl(node, "list_queues", "name", "leader", "--formatter", "json", "-q")
                if rc == 0:
                    try:
                        rows = json.loads(out)
                    except ValueError:
                        rows = []
                    for row in rows:
                        if row.get("name") == stream and row.get("leader"):
                            return self.node_named(row["leader"])
                last = out
                break
            time.sleep(0.5)
        raise BrokerUnavailable(f"no leader known for stream {stream!r}: {last}")

    def non_loopback_sockets(self) -> Tuple[List[str], List[str]]:
        """
        The broker processes' TCP sockets that are not on loopback:
        C{(offences, replication_listeners)}.  An offence is a
        connection with an end outside 127.0.0.0/8 (or ::1), or a
        listener on another address, except RabbitMQ 3.10's stream
        replication listeners: those bind the wildcard address whatever
        the configuration says, and are listed apart (their replicas
        connect to them over 127.0.0.1, which the offences check).
        """
        pids = {p for node in self.nodes for p in node.pids()}
        pids |= {self._epmd.pid} if self._epmd is not None else set()
        out = subprocess.run(["ss", "-Htanp"], capture_output=True, text=True).stdout
        offences, replication = [], []
        low, high = self.osiris_range
        for line in out.splitlines():
            owners = {int(p) for p in _pids_in(line)}
            if not owners & pids:
                continue
            fields = line.split()
            state, local, peer = fields[0], fields[3], fields[4]
            if state == "LISTEN":
                host, port = _split(local)
                if _loopback(host):
                    continue
                if low <= port <= high:
                    replication.append(line)
                else:
                    offences.append(line)
            elif not (_loopback(_split(local)[0]) and _loopback(_split(peer)[0])):
                offences.append(line)
        return offences, replication


def _pids_in(line: str) -> List[str]:
    found = []
    for part in line.split("pid=")[1:]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        if digits:
            found.append(digits)
    return found


def _split(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if "%" in host:
        host = host.split("%")[0]
    return host, int(port) if port.isdigit() else 0


def _loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1") or host.startswith("::ffff:127.")
