"""
txlibxl's typed errors.

Every libxl return code that is not 0 becomes a :class:`LibxlError`: one
subclass per ``ERROR_*`` code of libxl's ``libxl_error`` enum (Xen 4.17's
``libxl_types.idl``), each carrying the code, the name of the C call that
returned it and a message.  :func:`from_code` picks the subclass.  Codes
this version does not know (a newer libxl, or a positive value returned by
an application hook and passed back by libxl) give a plain
:class:`LibxlError`.

The table (:data:`ERROR_CLASSES`, :data:`ERROR_CODES` and the
``ERROR_*`` constants) is checked in; ``tests/core/test_errors.py``
compares it with the installed headers' enum and with the compiled
binding, so a mismatch fails the tests rather than going unnoticed.

Besides libxl's codes, the upper layers need a few errors of their own:
:class:`ContextClosed`, :class:`ContextFailed`, :class:`LibxlDisaster`,
:class:`ContextStateError` and :class:`ReentrantCall`; and
:class:`InvalidConfiguration`, a :class:`LibxlError` not tied to one code
(a configuration libxl refused, or would have silently dropped parts of).
All errors derive from :class:`TxlibxlError`.

This module imports nothing native: it is safe to import anywhere.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "TxlibxlError",
    "LibxlError",
    "ERROR_CODES",
    "ERROR_CLASSES",
    "from_code",
    "error_class",
    "ContextClosed",
    "ContextFailed",
    "XenUnavailable",
    "LibxlDisaster",
    "ContextStateError",
    "ReentrantCall",
    "InvalidConfiguration",
]


class TxlibxlError(Exception):
    """
    Base of every error txlibxl raises on purpose.
    """


class LibxlError(TxlibxlError):
    """
    libxl returned the error code C{code} from C{call}.

    Subclasses stand for one code each and set the class attributes
    ``code`` and ``name``; constructing a subclass without a code uses the
    class's own.

    :ivar code: libxl's return code (negative; a hook's positive value is
        passed through as is).
    :ivar call: the C function that returned it (e.g. ``"libxl_ctx_alloc"``),
        or the binding method that refused bad input before calling C.
    :ivar message: what went wrong, for people.
    """

    code: Optional[int] = None
    name: Optional[str] = None
    description = "unknown libxl error"

    def __init__(
        self, code: Optional[int] = None, call: str = "", message: Optional[str] = None
    ) -> None:
        if code is None:
            code = type(self).code
        if code is None:
            raise TypeError(f"{type(self).__name__} needs an error code")
        if message is None:
            message = _CLASSES.get(code, LibxlError).description
        super().__init__(code, call, message)
        self.code = code
        self.call = call
        self.message = message

    def __str__(self) -> str:
        name = _NAMES.get(self.code, "ERROR_UNKNOWN")
        where = f"{self.call}: " if self.call else ""
        return f"{where}{self.message} ({name}, {self.code})"


# libxl_error (libxl_types.idl, Xen 4.17): the codes, in the headers' order.
ERROR_NONSPECIFIC = -1
ERROR_VERSION = -2
ERROR_FAIL = -3
ERROR_NI = -4
ERROR_NOMEM = -5
ERROR_INVAL = -6
ERROR_BADFAIL = -7
ERROR_GUEST_TIMEDOUT = -8
ERROR_TIMEDOUT = -9
ERROR_NOPARAVIRT = -10
ERROR_NOT_READY = -11
ERROR_OSEVENT_REG_FAIL = -12
ERROR_BUFFERFULL = -13
ERROR_UNKNOWN_CHILD = -14
ERROR_LOCK_FAIL = -15
ERROR_JSON_CONFIG_EMPTY = -16
ERROR_DEVICE_EXISTS = -17
ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH = -18
ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED = -19
ERROR_VNUMA_CONFIG_INVALID = -20
ERROR_DOMAIN_NOTFOUND = -21
ERROR_ABORTED = -22
ERROR_NOTFOUND = -23
ERROR_DOMAIN_DESTROYED = -24
ERROR_FEATURE_REMOVED = -25
ERROR_PROTOCOL_ERROR_QMP = -26
ERROR_UNKNOWN_QMP_ERROR = -27
ERROR_QMP_GENERIC_ERROR = -28
ERROR_QMP_COMMAND_NOT_FOUND = -29
ERROR_QMP_DEVICE_NOT_ACTIVE = -30
ERROR_QMP_DEVICE_NOT_FOUND = -31
ERROR_QEMU_API = -32


class NonspecificError(LibxlError):
    """``ERROR_NONSPECIFIC``: unspecified error."""

    code = ERROR_NONSPECIFIC
    name = "ERROR_NONSPECIFIC"
    description = "unspecified error"


class VersionError(LibxlError):
    """``ERROR_VERSION``: libxl version mismatch."""

    code = ERROR_VERSION
    name = "ERROR_VERSION"
    description = "libxl version mismatch"


class GeneralFailure(LibxlError):
    """``ERROR_FAIL``: operation failed."""

    code = ERROR_FAIL
    name = "ERROR_FAIL"
    description = "operation failed"


class NotImplementedByLibxl(LibxlError, NotImplementedError):
    """``ERROR_NI``: not implemented."""

    code = ERROR_NI
    name = "ERROR_NI"
    description = "not implemented"


class OutOfMemory(LibxlError):
    """``ERROR_NOMEM``: out of memory."""

    code = ERROR_NOMEM
    name = "ERROR_NOMEM"
    description = "out of memory"


class InvalidArgument(LibxlError, ValueError):
    """``ERROR_INVAL``: invalid argument."""

    code = ERROR_INVAL
    name = "ERROR_INVAL"
    description = "invalid argument"


class BadFailure(LibxlError):
    """``ERROR_BADFAIL``: failed, leaving things in a bad state."""

    code = ERROR_BADFAIL
    name = "ERROR_BADFAIL"
    description = "failed, leaving things in a bad state"


class GuestTimedOut(LibxlError):
    """``ERROR_GUEST_TIMEDOUT``: the guest did not respond in time."""

    code = ERROR_GUEST_TIMEDOUT
    name = "ERROR_GUEST_TIMEDOUT"
    description = "the guest did not respond in time"


class TimedOut(LibxlError):
    """``ERROR_TIMEDOUT``: timed out."""

    code = ERROR_TIMEDOUT
    name = "ERROR_TIMEDOUT"
    description = "timed out"


class NoParavirt(LibxlError):
    """``ERROR_NOPARAVIRT``: the guest has no PV drivers."""

    code = ERROR_NOPARAVIRT
    name = "ERROR_NOPARAVIRT"
    description = "the guest has no PV drivers"


class NotReady(LibxlError):
    """``ERROR_NOT_READY``: no such event has happened."""

    code = ERROR_NOT_READY
    name = "ERROR_NOT_READY"
    description = "no such event has happened"


class OSEventRegistrationFailed(LibxlError):
    """``ERROR_OSEVENT_REG_FAIL``: an osevent hook failed."""

    code = ERROR_OSEVENT_REG_FAIL
    name = "ERROR_OSEVENT_REG_FAIL"
    description = "an osevent hook failed"


class BufferFull(LibxlError):
    """``ERROR_BUFFERFULL``: the buffer is too small."""

    code = ERROR_BUFFERFULL
    name = "ERROR_BUFFERFULL"
    description = "the buffer is too small"


class UnknownChild(LibxlError):
    """
    ``ERROR_UNKNOWN_CHILD``: not a child process of libxl
    (``libxl_childproc_reaped`` was told about a pid libxl did not fork).
    """

    code = ERROR_UNKNOWN_CHILD
    name = "ERROR_UNKNOWN_CHILD"
    description = "not a child process of libxl"


class LockFailed(LibxlError):
    """``ERROR_LOCK_FAIL``: could not take a lock."""

    code = ERROR_LOCK_FAIL
    name = "ERROR_LOCK_FAIL"
    description = "could not take a lock"


class JsonConfigEmpty(LibxlError):
    """``ERROR_JSON_CONFIG_EMPTY``: the stored JSON configuration is empty."""

    code = ERROR_JSON_CONFIG_EMPTY
    name = "ERROR_JSON_CONFIG_EMPTY"
    description = "the stored JSON configuration is empty"


class DeviceExists(LibxlError):
    """``ERROR_DEVICE_EXISTS``: the device already exists."""

    code = ERROR_DEVICE_EXISTS
    name = "ERROR_DEVICE_EXISTS"
    description = "the device already exists"


class CheckpointDevopsMismatch(LibxlError):
    """``ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH``: checkpoint device operations do not match."""

    code = ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH
    name = "ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH"
    description = "checkpoint device operations do not match"


class CheckpointDeviceNotSupported(LibxlError):
    """``ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED``: device not supported for checkpointing."""

    code = ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED
    name = "ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED"
    description = "device not supported for checkpointing"


class VnumaConfigInvalid(LibxlError):
    """``ERROR_VNUMA_CONFIG_INVALID``: invalid vNUMA configuration."""

    code = ERROR_VNUMA_CONFIG_INVALID
    name = "ERROR_VNUMA_CONFIG_INVALID"
    description = "invalid vNUMA configuration"


class DomainNotFound(LibxlError):
    """``ERROR_DOMAIN_NOTFOUND``: no such domain."""

    code = ERROR_DOMAIN_NOTFOUND
    name = "ERROR_DOMAIN_NOTFOUND"
    description = "no such domain"


class OperationAborted(LibxlError):
    """
    ``ERROR_ABORTED``: the operation was aborted (``libxl_ao_abort``); an
    aborted operation completes with this code, and ``libxl_ao_abort``
    returns it for an operation already being aborted.
    """

    code = ERROR_ABORTED
    name = "ERROR_ABORTED"
    description = "the operation was aborted"


class NotFound(LibxlError):
    """``ERROR_NOTFOUND``: not found."""

    code = ERROR_NOTFOUND
    name = "ERROR_NOTFOUND"
    description = "not found"


class DomainDestroyed(LibxlError):
    """``ERROR_DOMAIN_DESTROYED``: the domain was destroyed."""

    code = ERROR_DOMAIN_DESTROYED
    name = "ERROR_DOMAIN_DESTROYED"
    description = "the domain was destroyed"


class FeatureRemoved(LibxlError):
    """``ERROR_FEATURE_REMOVED``: the feature was removed."""

    code = ERROR_FEATURE_REMOVED
    name = "ERROR_FEATURE_REMOVED"
    description = "the feature was removed"


class QmpProtocolError(LibxlError):
    """``ERROR_PROTOCOL_ERROR_QMP``: QMP protocol error."""

    code = ERROR_PROTOCOL_ERROR_QMP
    name = "ERROR_PROTOCOL_ERROR_QMP"
    description = "QMP protocol error"


class QmpUnknownError(LibxlError):
    """``ERROR_UNKNOWN_QMP_ERROR``: unknown QMP error."""

    code = ERROR_UNKNOWN_QMP_ERROR
    name = "ERROR_UNKNOWN_QMP_ERROR"
    description = "unknown QMP error"


class QmpGenericError(LibxlError):
    """``ERROR_QMP_GENERIC_ERROR``: QMP generic error."""

    code = ERROR_QMP_GENERIC_ERROR
    name = "ERROR_QMP_GENERIC_ERROR"
    description = "QMP generic error"


class QmpCommandNotFound(LibxlError):
    """``ERROR_QMP_COMMAND_NOT_FOUND``: QMP command not found."""

    code = ERROR_QMP_COMMAND_NOT_FOUND
    name = "ERROR_QMP_COMMAND_NOT_FOUND"
    description = "QMP command not found"


class QmpDeviceNotActive(LibxlError):
    """``ERROR_QMP_DEVICE_NOT_ACTIVE``: QMP device not active."""

    code = ERROR_QMP_DEVICE_NOT_ACTIVE
    name = "ERROR_QMP_DEVICE_NOT_ACTIVE"
    description = "QMP device not active"


class QmpDeviceNotFound(LibxlError):
    """``ERROR_QMP_DEVICE_NOT_FOUND``: QMP device not found."""

    code = ERROR_QMP_DEVICE_NOT_FOUND
    name = "ERROR_QMP_DEVICE_NOT_FOUND"
    description = "QMP device not found"


class QemuApiError(LibxlError):
    """``ERROR_QEMU_API``: QEMU API error."""

    code = ERROR_QEMU_API
    name = "ERROR_QEMU_API"
    description = "QEMU API error"


#: Every libxl_error code's class, in the headers' order.
ERROR_CLASSES: Tuple[Type[LibxlError], ...] = (
    NonspecificError,
    VersionError,
    GeneralFailure,
    NotImplementedByLibxl,
    OutOfMemory,
    InvalidArgument,
    BadFailure,
    GuestTimedOut,
    TimedOut,
    NoParavirt,
    NotReady,
    OSEventRegistrationFailed,
    BufferFull,
    UnknownChild,
    LockFailed,
    JsonConfigEmpty,
    DeviceExists,
    CheckpointDevopsMismatch,
    CheckpointDeviceNotSupported,
    VnumaConfigInvalid,
    DomainNotFound,
    OperationAborted,
    NotFound,
    DomainDestroyed,
    FeatureRemoved,
    QmpProtocolError,
    QmpUnknownError,
    QmpGenericError,
    QmpCommandNotFound,
    QmpDeviceNotActive,
    QmpDeviceNotFound,
    QemuApiError,
)

#: (name, code) of every libxl_error code, in the headers' order.
ERROR_CODES: Tuple[Tuple[str, int], ...] = tuple((cls.name, cls.code) for cls in ERROR_CLASSES)

_CLASSES: Dict[int, Type[LibxlError]] = {cls.code: cls for cls in ERROR_CLASSES}
_NAMES: Dict[int, str] = {cls.code: cls.name for cls in ERROR_CLASSES}

__all__ += [cls.__name__ for cls in ERROR_CLASSES] + [cls.name for cls in ERROR_CLASSES]


def error_class(code: int) -> Type[LibxlError]:
    """
    The :class:`LibxlError` subclass for C{code}; :class:`LibxlError`
    itself for a code not in :data:`ERROR_CODES`.
    """
    return _CLASSES.get(code, LibxlError)


def from_code(code: int, call: str, message: Optional[str] = None) -> LibxlError:
    """
    The error for libxl's return code C{code} from the C function C{call}.

    :raises ValueError: C{code} is 0, which is success, not an error.
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"a libxl error code is an int, not {type(code).__name__}")
    if code == 0:
        raise ValueError(f"{call} returned 0, which is success")
    return error_class(code)(code, call, message)


class XenUnavailable(GeneralFailure):
    """
    There is no Xen here for libxl, or none this process may use: a
    context could not be made because libxl could not open the
    hypervisor's privileged command interface (``missing`` is
    ``"privcmd"``: ``/dev/xen/privcmd``) or could not connect to xenstored
    (``"xenstored"``: its socket, ``$XENSTORED_PATH`` or
    ``/var/run/xenstored/socket``, or ``/dev/xen/xenbus``).  The message
    says which, what libxl said, and how to run without Xen: against a
    simulated host (:mod:`txlibxl.testing`, ``twistd libxl-events
    --simulate``).

    It is libxl's ``ERROR_FAIL`` (a ``GeneralFailure``), so code that
    catches :class:`LibxlError` still does.

    :ivar missing: ``"privcmd"`` or ``"xenstored"``.
    :ivar said: what libxl (and libxenctrl) logged, or ``None``.
    """

    description = "there is no Xen here"

    _WHAT = {
        "privcmd": "the hypervisor's privileged command interface (privcmd, /dev/xen/privcmd)",
        "xenstored": "xenstored",
    }

    def __init__(self, missing: str, said: Optional[str] = None, where: Optional[str] = None) -> None:
        if missing not in self._WHAT:
            raise ValueError(f"missing must be one of {sorted(self._WHAT)}, not {missing!r}")
        what = self._WHAT[missing] + (f" at {where}" if where else "")
        verb = "open" if missing == "privcmd" else "connect to"
        denied = bool(said) and "Permission denied" in str(said)
        head = (
            f"Xen is here but this process may not use it: libxl may not {verb} {what}"
            if denied
            else f"there is no Xen here: libxl could not {verb} {what}"
        )
        message = (
            head
            + (f" (libxl said: {said})" if said else "")
            + ". To run without Xen, use a simulated host: txlibxl.testing (start_simulated_host,"
            " then use_simulated_host before the first Context) or twistd libxl-events --simulate"
        )
        super().__init__(ERROR_FAIL, "libxl_ctx_alloc", message)
        self.missing = missing
        self.said = said
        self._where = where

    def __reduce__(self) -> Any:
        return (type(self), (self.missing, self.said, self._where))


class ContextClosed(TxlibxlError):
    """
    The libxl context was freed; nothing more can be done with it.
    """


class ContextFailed(TxlibxlError):
    """
    The libxl context suffered a disaster (see :class:`LibxlDisaster`)
    and must be closed and replaced.
    """


class LibxlDisaster(TxlibxlError):
    """
    libxl reported, through its ``disaster`` callback, that it could not
    deliver events (a broken system, xenstore or Xen).

    :ivar type: the ``libxl_event_type`` whose events may be lost, or 0
        for all types.
    :ivar message: libxl's description of what it was doing.
    :ivar errnoval: the errno value, or -1.
    """

    def __init__(self, type: int, message: str, errnoval: int) -> None:
        super().__init__(type, message, errnoval)
        self.type = type
        self.message = message
        self.errnoval = errnoval

    def __str__(self) -> str:
        kind = f"events of type {self.type}" if self.type else "events of any type"
        errno_part = f" (errno {self.errnoval})" if self.errnoval not in (-1, 0) else ""
        return f"libxl disaster, {kind} may be lost: {self.message}{errno_part}"


class ContextStateError(TxlibxlError, RuntimeError):
    """
    The call is not allowed in the context's current state, where libxl
    would fail an assertion and abort the whole process (for instance
    freeing a context with operations in flight, registering the osevent
    hooks twice or after libxl started using fds and timers).  The call
    was refused before reaching C.
    """


class ReentrantCall(ContextStateError):
    """
    libxl was about to be called from a place where libxl forbids it:
    from an osevent hook, from the disaster callback, from the fork
    callback, from an event predicate or from the log callback (libxl holds
    its lock there, and an ``occurred_*`` call from a hook aborts the
    process with an assertion).  The call was refused before reaching C.
    """


class InvalidConfiguration(LibxlError, ValueError):
    """
    A configuration (a domain's, a disk's, a NIC's, a disk spec string)
    that libxl cannot take as given.  Raised before anything is created.

    * libxl refused it (its JSON parser, or libxlutil's disk spec parser):
      ``code`` is libxl's (``ERROR_FAIL`` for JSON it cannot read,
      ``ERROR_INVAL`` for a bad disk spec), ``message`` is what libxl
      itself said about it, as it logged it, and ``refused`` names the
      values at fault when they can be found.
    * libxl would have ignored part of it: its JSON parser skips keys it
      does not know and values of the wrong JSON type without a word.
      ``code`` is ``ERROR_INVAL`` and ``ignored`` names each such key by its
      path (``"b_info.max_vcpu"``, ``"disks[0].vdev"``).

    It is also a ``ValueError``: the configuration is the caller's.

    :ivar refused: the paths of the values libxl refused.
    :ivar ignored: the paths of the keys libxl would have ignored.
    """

    description = "invalid configuration"

    def __init__(
        self,
        code: Optional[int] = None,
        call: str = "",
        message: Optional[str] = None,
        ignored: Tuple[str, ...] = (),
        refused: Tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            ERROR_INVAL if code is None else code, call, self.description if message is None else message
        )
        self.ignored = tuple(ignored)
        self.refused = tuple(refused)
