"""
What the package ships and how it installs: the licence, the sdist, the
editable install ``make build`` makes, and what a missing prerequisite
says.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from typing import List

from twisted.trial.unittest import SkipTest, TestCase

from . import unitfile

CHECKOUT = unitfile.CHECKOUT
LICENSE = os.path.join(CHECKOUT, "LICENSE")


def _tracked_files() -> List[str]:
    """The files git tracks in this checkout (SkipTest outside a git checkout)."""
    if shutil.which("git") is None or not os.path.exists(os.path.join(CHECKOUT, ".git")):
        raise SkipTest("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return sorted(p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(CHECKOUT, p)))


class LicenseTests(TestCase):
    def test_the_license_file_is_the_mit_licence_of_the_txlibxl_developers(self) -> None:
        with open(LICENSE) as f:
            text = f.read()
        self.assertTrue(text.startswith("MIT License\n"))
        self.assertIn("Copyright (c) 2026 txlibxl developers", text)
        self.assertIn("Permission is hereby granted, free of charge", text)

    def test_the_installed_metadata_says_mit_and_carries_the_license_file(self) -> None:
        dist = metadata.distribution("txlibxl")
        self.assertEqual(dist.metadata["License"] or dist.metadata["License-Expression"], "MIT")
        self.assertIn("LICENSE", dist.metadata.get_all("License-File") or [])
        shipped = [str(p) for p in (dist.files or []) if p.name == "LICENSE"]
        self.assertTrue(shipped, "no LICENSE among the installed files")


class SdistTests(TestCase):
    """The sdist of a clean checkout (its tracked files only)."""

    timeout = 300

    def _sdist_names(self) -> List[str]:
        tracked = _tracked_files()
        work = tempfile.mkdtemp(prefix="txlibxl-sdist-")
        self.addCleanup(shutil.rmtree, work, True)
        src = os.path.join(work, "src")
        for path in tracked:
            os.makedirs(os.path.join(src, os.path.dirname(path)), exist_ok=True)
            shutil.copy2(os.path.join(CHECKOUT, path), os.path.join(src, path))
        code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
        result = subprocess.run(
            [sys.executable, "-c", code, os.path.join(work, "out")],
            cwd=src, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with tarfile.open(os.path.join(work, "out", result.stdout.split()[-1])) as tar:
            return [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]

    def test_the_sdist_is_the_whole_tracked_tree_but_ci(self) -> None:
        names = set(self._sdist_names())
        expected = [p for p in _tracked_files() if not p.startswith((".ci/", ".git"))]
        missing = [p for p in expected if p not in names]
        self.assertEqual(missing, [], "tracked files the sdist does not ship")
        self.assertIn("LICENSE", names)
        # The test suite's own needs: the benchmarks its smoke tests import.
        self.assertIn("benchmarks/__init__.py", names)
        self.assertIn("tests/test_benchmarks_smoke.py", names)

    def test_the_sdist_ships_no_build_products(self) -> None:
        names = self._sdist_names()
        junk = [n for n in names if n.endswith((".so", ".o", ".pyc")) or n.startswith(("docs/_build/", ".cache/"))]
        self.assertEqual(junk, [])


class InstallTests(TestCase):
    def test_twistd_of_the_virtualenv_lists_the_plugin(self) -> None:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            raise SkipTest(f"no {twistd}: txlibxl is not installed in a virtualenv here")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # Outside the checkout, so that only the installation can provide it.
        result = subprocess.run(
            [twistd, "--help"], cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertRegex(result.stdout, r"(?m)^\s+libxl-events\s")

    def test_make_build_uses_a_supported_editable_mode(self) -> None:
        with open(os.path.join(CHECKOUT, "Makefile")) as f:
            makefile = f.read()
        self.assertNotIn("editable_mode=compat", makefile)

    def test_make_build_does_nothing_when_nothing_changed(self) -> None:
        if shutil.which("make") is None or not os.path.exists(os.path.join(CHECKOUT, ".stamp-build")):
            raise SkipTest("txlibxl was not installed by make build here")
        result = subprocess.run(["make", "-q", "build"], cwd=CHECKOUT, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, "make build would reinstall the package")

    def test_data_files_install_the_pages_the_unit_documents(self) -> None:
        prefix = tempfile.mkdtemp(prefix="txlibxl-data-")
        self.addCleanup(shutil.rmtree, prefix, True)
        result = subprocess.run(
            [sys.executable, "setup.py", "-q", "install_data", "--install-dir", prefix],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        venv = "/opt/txlibxl/venv/"
        uris = " ".join(unitfile.settings().get("Documentation", [])).split()
        self.assertTrue(uris)
        for uri in uris:
            self.assertTrue(uri.startswith("file://" + venv), uri)
            self.assertTrue(os.path.isfile(os.path.join(prefix, uri[len("file://" + venv) :])), uri)


class MissingHeadersTests(TestCase):
    def test_missing_libxl_headers_name_the_debian_package_and_the_variable(self) -> None:
        env = dict(os.environ, TXLIBXL_INCLUDE_DIR=os.path.join(tempfile.gettempdir(), "no-such-include-dir"))
        result = subprocess.run(
            [sys.executable, "-c", "import runpy; runpy.run_path('txlibxl/_libxl/_build.py')"],
            cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        self.assertNotEqual(result.returncode, 0)
        last = result.stderr.strip().splitlines()[-1]
        self.assertIn("apt-get install libxen-dev", last)
        self.assertIn("TXLIBXL_INCLUDE_DIR", last)

    def test_the_readme_says_how_to_build_without_libxen_dev_in_usr_include(self) -> None:
        with open(os.path.join(CHECKOUT, "README.md")) as f:
            readme = f.read()
        self.assertIn("TXLIBXL_INCLUDE_DIR", readme)
        self.assertIn("libxen-dev", readme)
