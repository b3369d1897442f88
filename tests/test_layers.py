"""
The layers' import rules, checked on the source so that they last.

Each layer imports only the layers below it (``docs/concepts.rst``):

* the simulated host (``txlibxl.sim``) imports nothing of the client side;
* the binding (``txlibxl._libxl``) imports no event loop;
* the event-loop side (``txlibxl.loop``) knows no events, watches or
  contexts, and its asyncio modules (``txlibxl.loop.asyncio_*``) import
  no Twisted at all;
* the library (everything but ``txlibxl.daemon``) imports no daemon, no
  broker client and no fleet;
* the fleet's consumer (``txlibxl.fleet``) imports nothing of the libxl
  side, and the AMQP plumbing both ends share (``txlibxl.amqp``) imports
  neither end;
* the plugin file imports nothing heavy.

Every ``import`` statement counts, also those inside functions (a lazy
import is still a dependency), and an import reaches everything the
imported module imports in turn.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Dict, Iterator, Set

from twisted.trial.unittest import TestCase

import txlibxl

PACKAGE_DIR = os.path.dirname(os.path.abspath(txlibxl.__file__))
PLUGIN_FILE = os.path.join(os.path.dirname(PACKAGE_DIR), "twisted", "plugins", "txlibxl_events.py")


def _module_name(path: str) -> str:
    relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")]
    parts = relative.split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[_module_name(path)] = path
    return found


def _imported(path: str, module: str) -> Iterator[str]:
    """Every module named by an import statement in C{path}."""
    is_package = os.path.basename(path) == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                # ``from txlibxl import errors`` imports a module too.
                yield f"{target}.{alias.name}"


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def import_graph() -> Dict[str, Set[str]]:
    """Module -> every module (txlibxl's or not) it imports, transitively."""
    modules = _modules()
    direct: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        names = set()
        for name in _imported(path, module):
            names.update(n for n in _with_parents(name) if n in modules or not n.startswith("txlibxl"))
        names.update(p for p in _with_parents(module) if p != module)
        direct[module] = names

    closure: Dict[str, Set[str]] = {}

    def reach(module: str) -> Set[str]:
        if module not in closure:
            closure[module] = set()
            seen = set(direct.get(module, ()))
            stack = list(seen)
            while stack:
                for more in direct.get(stack.pop(), ()):
                    if more not in seen:
                        seen.add(more)
                        stack.append(more)
            seen.discard(module)
            closure[module] = seen
        return closure[module]

    return {module: reach(module) for module in modules}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


#: The public API's modules (the Context and the parts it is made of).
PUBLIC_API = ("txlibxl.context", "txlibxl.operations", "txlibxl.power", "txlibxl.building",
              "txlibxl.devices", "txlibxl.moving", "txlibxl.streamhead", "txlibxl.migration",
              "txlibxl.config", "txlibxl.watches", "txlibxl.events",
              "txlibxl.errors", "txlibxl.interfaces")

CLIENT_SIDE = PUBLIC_API + ("txlibxl._libxl", "txlibxl.loop", "txlibxl.daemon", "txlibxl.testing")


class LayerTests(TestCase):
    """
    Each rule fails with the offending import chain's endpoints named.
    """

    graph = import_graph()

    def assertImportsNone(self, layer: str, forbidden: tuple, why: str) -> None:
        offences = sorted(
            f"{module} -> {target}"
            for module, targets in self.graph.items()
            if _within(module, layer)
            for target in targets
            if _within(target, *forbidden)
        )
        self.assertEqual(offences, [], why)

    def test_the_graph_sees_every_layer(self) -> None:
        """
        The checks below look at real modules: each layer has some.
        """
        for layer in ("txlibxl.sim", "txlibxl._libxl", "txlibxl.loop", "txlibxl.daemon", "txlibxl.testing",
                      "txlibxl.fleet", "txlibxl.amqp"):
            self.assertTrue([m for m in self.graph if _within(m, layer)], layer)
        self.assertIn("txlibxl._libxl.loader", self.graph["txlibxl.context"])

    def test_the_simulator_imports_nothing_of_the_client_side(self) -> None:
        """
        The simulated host meets libxl only where real Xen would: its
        sockets, its shim and the processes libxl runs.
        """
        self.assertImportsNone("txlibxl.sim", CLIENT_SIDE, "the simulator imports the client side")

    def test_the_binding_knows_no_event_loop(self) -> None:
        """
        The binding calls out through the seams in txlibxl.interfaces only
        (errors and the stream-start check are leaves it shares).
        """
        self.assertImportsNone(
            "txlibxl._libxl",
            ("txlibxl.loop", "txlibxl.daemon", "txlibxl.testing", "txlibxl.sim", "twisted.internet",
             "asyncio") + tuple(m for m in PUBLIC_API if m not in ("txlibxl.errors", "txlibxl.interfaces",
                                                                "txlibxl.streamhead")),
            "the binding imports an event loop or a layer above it",
        )

    def test_the_loop_layer_knows_no_events(self) -> None:
        self.assertImportsNone(
            "txlibxl.loop",
            ("txlibxl.daemon", "txlibxl.testing", "txlibxl.sim")
            + tuple(m for m in PUBLIC_API if m not in ("txlibxl.errors", "txlibxl.interfaces",
                                                                "txlibxl.streamhead")),
            "the event-loop side imports the event layer or above",
        )

    def test_the_asyncio_loop_modules_import_no_twisted(self) -> None:
        """
        An asyncio application (no reactor, perhaps no Twisted installed)
        can use libxl's hooks, children and xenstore watches.
        """
        asyncio_modules = sorted(m for m in self.graph if m.startswith("txlibxl.loop.asyncio_"))
        self.assertEqual(
            asyncio_modules,
            ["txlibxl.loop.asyncio_children", "txlibxl.loop.asyncio_osevents",
             "txlibxl.loop.asyncio_xenstore"],
        )
        offences = sorted(
            f"{module} -> {target}"
            for module in asyncio_modules
            for target in self.graph[module]
            if _within(target, "twisted")
        )
        self.assertEqual(offences, [], "an asyncio loop module imports Twisted")

    def test_the_library_imports_no_daemon(self) -> None:
        """
        The public API knows no daemon, no HTTP server and no broker.
        """
        for layer in PUBLIC_API + ("txlibxl._libxl", "txlibxl.loop", "txlibxl.testing"):
            self.assertImportsNone(layer, ("txlibxl.daemon", "twisted.web", "pika", "txlibxl.amqp", "txlibxl.fleet"),
                                   f"{layer} imports the daemon's side")

    def test_the_fleet_imports_nothing_of_the_libxl_side(self) -> None:
        """
        ``python -m txlibxl.fleet`` runs where there is no libxl: it
        reads the broker, not the host.
        """
        self.assertImportsNone("txlibxl.fleet", CLIENT_SIDE + ("txlibxl.sim",),
                               "the fleet consumer imports the libxl side")

    def test_the_shared_amqp_plumbing_imports_neither_end(self) -> None:
        self.assertImportsNone("txlibxl.amqp", CLIENT_SIDE + ("txlibxl.sim", "txlibxl.fleet"),
                               "txlibxl.amqp imports one of the ends it serves")

    def test_the_package_itself_imports_nothing_of_its_own(self) -> None:
        """
        ``import txlibxl`` (which the simulator and the plugin do too)
        imports no layer: its public names are found when first used.
        """
        own = sorted(t for t in self.graph["txlibxl"] if t.startswith("txlibxl"))
        self.assertEqual(own, [])

    def test_the_plugin_file_imports_nothing_heavy(self) -> None:
        """
        twistd imports every plugin file to list the plugins.
        """
        code = (
            "import sys, runpy; runpy.run_path(%r); "
            "print(sorted(m for m in sys.modules if m.startswith('txlibxl') or m.startswith('twisted.internet.reactor')))"
            % PLUGIN_FILE
        )
        out = subprocess.check_output([sys.executable, "-c", code], text=True)
        self.assertEqual(out.strip(), "[]")

    def test_import_txlibxl_gives_the_public_names(self) -> None:
        """
        The context, the event values and the errors are names of the
        package itself.
        """
        from txlibxl.context import Context
        from txlibxl.errors import DomainNotFound, LibxlError
        from txlibxl.events import DomainDeath

        self.assertIs(txlibxl.Context, Context)
        self.assertIs(txlibxl.DomainDeath, DomainDeath)
        self.assertIs(txlibxl.LibxlError, LibxlError)
        self.assertIs(txlibxl.DomainNotFound, DomainNotFound)
        self.assertIn("Context", dir(txlibxl))
        with self.assertRaises(AttributeError):
            txlibxl.NoSuchName  # type: ignore[attr-defined]

    def test_python_m_txlibxl_version(self) -> None:
        out = subprocess.check_output([sys.executable, "-m", "txlibxl", "--version"], text=True)
        self.assertEqual(out.strip(), f"txlibxl {txlibxl.__version__}")
