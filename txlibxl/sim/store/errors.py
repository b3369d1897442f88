"""
The one error of the simulated xenstore.

Every store operation that fails raises :class:`XenstoreError` with the
errno name the C daemon would send; :mod:`txlibxl.sim.xenstored` puts that
name in its ``ERROR`` reply as it is.
"""
from __future__ import annotations

__all__ = ["XenstoreError"]


class XenstoreError(Exception):
    """
    A xenstore operation failed.

    @ivar errno_name: the errno name xenstored sends in its ``ERROR`` reply,
        one of those in ``xs_wire.h`` (``"ENOENT"``, ``"EACCES"``,
        ``"EAGAIN"``, ``"EINVAL"``, ``"E2BIG"``, ``"ENOSPC"``, ...).
    """

    def __init__(self, errno_name: str, detail: str = "") -> None:
        super().__init__(f"{errno_name}: {detail}" if detail else errno_name)
        self.errno_name = errno_name
        self.detail = detail
