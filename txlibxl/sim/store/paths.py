"""
Xenstore path syntax, as the C xenstored checks it.

Absolute paths start with ``/``, have no ``//`` and no trailing ``/``, use
the characters ``[A-Za-z0-9-/_@]``, and are at most ``path_max`` characters
long beyond a leading ``/local/domain/<domid>/``.  Relative paths resolve
against ``/local/domain/<domid of the caller>``.  Paths starting with ``@``
name the special watches and are left as they are.

The module-level functions walk paths as strings (parent, ancestors, child);
:class:`_PathsMixin` gives the :class:`~txlibxl.sim.store.Store` the checks
that depend on its quotas.
"""
from __future__ import annotations

import re
from typing import Iterator

from .limits import Quotas

_VALID_CHARS = re.compile(r"[A-Za-z0-9\-/_@]*\Z")
# sscanf("/local/domain/%5u/"): up to five characters of an unsigned number.
_LOCAL_DOMAIN = re.compile(r"/local/domain/(?:-\d{1,4}|\d{1,5})/")


def _parent_of(name: str) -> str:
    slash = name.rfind("/")
    return name[:slash] if slash > 0 else "/"


def _ancestors_and_self(name: str) -> Iterator[str]:
    yield "/"
    if name == "/":
        return
    start = 1
    while True:
        slash = name.find("/", start)
        if slash < 0:
            yield name
            return
        yield name[:slash]
        start = slash + 1


def _child_path(parent: str, child: str) -> str:
    return "/" + child if parent == "/" else parent + "/" + child


class _PathsMixin:
    """The Store's path checks (part of :class:`~txlibxl.sim.store.Store`)."""

    quotas: Quotas

    @staticmethod
    def domain_path(domid: int) -> str:
        return f"/local/domain/{domid & 0xFFFFFFFF}"

    def _canonicalize(self, domid: int, path: str) -> str:
        if path.startswith("/") or path.startswith("@"):
            return path
        return f"{self.domain_path(domid)}/{path}"

    def _valid_name(self, name: str) -> bool:
        if not name.startswith("/"):
            return False
        if name.endswith("/") and name != "/":
            return False
        if "//" in name:
            return False
        match = _LOCAL_DOMAIN.match(name)
        local_off = match.end() if match else 0
        if len(name) > local_off + self.quotas.path_max:
            return False
        return _VALID_CHARS.match(name) is not None
