"""
The simulator is a separate world: it meets libxl only through the
xenstore socket, the shim and the helper processes, exactly where real Xen
would be, so nothing in ``txlibxl/sim/`` may import txlibxl's client side
(or anything else of txlibxl outside ``txlibxl.sim``).
"""
import ast
import os

from twisted.trial.unittest import TestCase

import txlibxl.sim

SIM_ROOT = os.path.dirname(os.path.abspath(txlibxl.sim.__file__))


def _sim_modules():
    """(module name, path) of every Python file under txlibxl/sim."""
    for directory, _subdirs, files in os.walk(SIM_ROOT):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, SIM_ROOT)[: -len(".py")].split(os.sep)
            if relative[-1] == "__init__":
                relative = relative[:-1]
            yield ".".join(["txlibxl", "sim"] + relative), path


def _imported(module, path):
    """Every module the file imports, anywhere in it, as an absolute name."""
    is_package = path.endswith("__init__.py")
    package = module if is_package else module.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield node.lineno, name


class LayeringTests(TestCase):
    def test_the_simulator_imports_nothing_from_the_client_side(self) -> None:
        offending = []
        count = 0
        for module, path in _sim_modules():
            count += 1
            for lineno, name in _imported(module, path):
                top = name.split(".")
                if top[0] == "txlibxl" and top[:2] != ["txlibxl", "sim"]:
                    offending.append("%s:%d imports %s" % (os.path.relpath(path, SIM_ROOT), lineno, name))
        self.assertGreater(count, 20)
        self.assertEqual(offending, [])

    def test_the_check_sees_a_client_side_import(self) -> None:
        """The resolver above finds relative imports that climb out of sim."""
        path = os.path.join(self.mktemp() + ".py")
        with open(path, "w") as f:
            f.write("from ...context import Context\nfrom .. import errors\nimport txlibxl.testing\n")
        self.assertEqual(
            [name for _, name in _imported("txlibxl.sim.store.store", path)],
            ["txlibxl.context", "txlibxl.sim", "txlibxl.testing"],
        )
