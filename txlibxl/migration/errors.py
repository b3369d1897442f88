"""
The errors of a migration.  Each is a
:class:`~txlibxl.errors.LibxlError` carrying libxl's code when libxl
failed (on this side, or as the peer reported it), else ``ERROR_FAIL``
(``ERROR_ABORTED`` for a cancel); ``side`` says where it happened.
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import CancelledError

from ..errors import ERROR_ABORTED, ERROR_FAIL, LibxlError

__all__ = ["MigrationFailed", "MigrationCancelled", "MigrationIndeterminate", "MigrationProtocolError"]


class MigrationFailed(LibxlError):
    """
    The migration did not happen; the domain runs on the source, and
    nothing of it is left on the target.

    :ivar side: ``"source"`` or ``"target"``: where it failed.
    """

    code = ERROR_FAIL
    name = "ERROR_FAIL"

    def __init__(self, message: str, side: str, code: Optional[int] = None, call: str = "migrate") -> None:
        super().__init__(code if code is not None else type(self).code, call, message)
        self.side = side


class MigrationCancelled(MigrationFailed, CancelledError):
    """
    A side cancelled the migration before the source gave permission
    (``ERROR_ABORTED``); as :class:`MigrationFailed`.

    :ivar settled: on the source, a Deferred that fires once the domain
        runs there again (its save aborted, or it resumed); ``None`` on
        the target.
    """

    settled: Any = None
    code = ERROR_ABORTED
    name = "ERROR_ABORTED"


class MigrationProtocolError(MigrationFailed):
    """The peer does not speak this protocol (or this version of it), or
    broke it; as :class:`MigrationFailed`."""


class MigrationIndeterminate(MigrationFailed):
    """
    The connection was lost after the source gave permission and before
    the target reported: the domain may be running on the target.  The
    source keeps its copy suspended (never resumed, never destroyed): look
    on the target, then destroy or resume it (``Context.resume``).
    """
