"""
Reading ``contrib/txlibxl-events.service``: its settings, the units it
orders itself against, and which of those a Debian system has.  Shared by
the host's tests (:mod:`tests.packaging.test_systemd_unit`) and the one
that checks the names against a real Debian dom0
(:mod:`tests.realxen.test_debian_units`).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Set

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(CHECKOUT, "contrib", "txlibxl-events.service")

#: The settings that name other units.
DEPENDENCY_SETTINGS = ("After", "Before", "Wants", "Requires", "Requisite", "BindsTo", "PartOf", "WantedBy")

#: Where a Debian system keeps unit files.
UNIT_DIRS = ("lib/systemd/system", "usr/lib/systemd/system", "etc/systemd/system")


def settings(path: str = UNIT) -> Dict[str, List[str]]:
    """Every C{Name=value} of the unit, continuation lines joined, in order."""
    with open(path) as f:
        text = re.sub(r"\s*\\\n\s*", " ", f.read())
    found: Dict[str, List[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        name, _, value = line.partition("=")
        found.setdefault(name.strip(), []).append(value.strip())
    return found


def dependencies(path: str = UNIT) -> Set[str]:
    """The units the unit names in its ordering and dependency settings."""
    named: Set[str] = set()
    for key, values in settings(path).items():
        if key in DEPENDENCY_SETTINGS:
            for value in values:
                named.update(value.split())
    return named


def units_on(root: str = "/") -> Set[str]:
    """
    The units a Debian system under C{root} has: its unit files, and the
    ones systemd's SysV generator makes of its ``/etc/init.d`` scripts
    (``/etc/init.d/xen`` becomes ``xen.service``).
    """
    names: Set[str] = set()
    for where in UNIT_DIRS:
        try:
            names.update(os.listdir(os.path.join(root, where)))
        except OSError:
            pass
    try:
        scripts = os.listdir(os.path.join(root, "etc", "init.d"))
    except OSError:
        scripts = []
    names.update(f"{name}.service" for name in scripts if not name.startswith(("README", ".")))
    return names
