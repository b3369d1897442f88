"""
One ``libxl_ctx`` and every C thing it needs: :class:`Ctx`, and the names
the binding's callers use (constants, :class:`RawEvent`,
:class:`DomainInfoRaw`, :func:`event_mask`).

:class:`Ctx` is composed of one part per concern, each in its own module
(see :mod:`txlibxl._libxl`); this module only puts them together.  Like
the whole package, it knows no reactor: libxl's osevent hooks become
calls on an :class:`~txlibxl.interfaces.IOSEventHooks` provider, libxl's
children are reported to an :class:`~txlibxl.interfaces.IChildWatcher`,
and :class:`Ctx` itself is the way back into libxl
(:class:`~txlibxl.interfaces.IOSEventSink` and
:class:`~txlibxl.interfaces.IChildSink`).

Rules every part keeps, for every caller:

* Every libxl return code is checked and raised as the typed
  :class:`~txlibxl.errors.LibxlError` for its code, carrying the code and
  the C call's name.  Bad input (a domid that is not an ordinary domain's,
  an empty vdev, a non-``str`` name...) raises
  :class:`~txlibxl.errors.InvalidArgument` before C is called
  (:mod:`.checks`).
* Calls libxl forbids are refused with a typed error before reaching C
  (libxl would fail an assertion and abort the process): any call after
  :meth:`Ctx.free` (:class:`~txlibxl.errors.ContextClosed`); any call from
  inside an osevent hook, the disaster, fork, log or predicate callbacks
  (:class:`~txlibxl.errors.ReentrantCall`); freeing with operations in
  flight, registering the hooks twice or late
  (:class:`~txlibxl.errors.ContextStateError`).
* Callbacks never let an exception through to C: a failing
  ``*_register``/``*_modify`` hook is logged and returns
  ``ERROR_OSEVENT_REG_FAIL`` (never 0); other failures are logged.
* Events are copied into :class:`RawEvent` and ``libxl_event_free``'d
  before Python code sees them; ``libxl_dominfo`` is disposed after being
  copied into :class:`DomainInfoRaw`.

Ownership (what libxl keeps pointers to, kept alive by the :class:`Ctx`
until :meth:`Ctx.free` returns, and by a module registry of live contexts
so that a forgotten, unfreed context never leaves libxl with dangling
pointers): the ``ffi.new_handle(ctx)`` user pointer given to every hook,
the logger, the ``libxl_event_hooks`` struct, all made and freed by
:class:`~txlibxl._libxl.ctx_base.CtxBase`.  The osevent and childproc
hook structs are static C data.

An asynchronous operation's arguments are the other thing libxl keeps
pointers to: libxl reads and writes them until the operation completes
(a create's ``libxl_domain_config`` and the ``uint32_t *domid`` it writes
the new domid to, a device struct, the configuration being retrieved, a
vCPU bitmap).  The rule, for every operation:

1. The binding allocates them and ``libxl_*_init``'s them; nothing of the
   caller's is passed to libxl (configurations come as JSON text).
2. From the call that starts the operation they belong to the
   :class:`Ctx`, as one :class:`~txlibxl._libxl.kept.KeptArguments` under
   the operation's ``op_id``.  If the start fails they are disposed at
   once (libxl kept no pointer).
3. They stay alive after the completion is reported, until the caller has
   dispatched it and calls :meth:`Ctx.finish_operation`, which reads the
   result from them (a domid, a configuration's JSON, a device as libxl
   completed it) and disposes them, once.
4. :meth:`Ctx.free` (refused while any operation is in flight) disposes
   whatever is left: completions still queued, never finished, lose their
   result but leak nothing.  A disposed argument is never read or
   disposed again.

cffi releases the GIL around every libxl call; callbacks take it back, on
whatever thread libxl calls them.
"""
from __future__ import annotations

from .constants import (
    DOMID_FIRST_RESERVED,
    EVENT_DISK_EJECT,
    EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE,
    EVENT_DOMAIN_DEATH,
    EVENT_DOMAIN_SHUTDOWN,
    EVENT_OPERATION_COMPLETE,
    EVENTMASK_ALL,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    XTL_CRITICAL,
    XTL_DEBUG,
    XTL_DETAIL,
    XTL_ERROR,
    XTL_INFO,
    XTL_NOTICE,
    XTL_PROGRESS,
    XTL_VERBOSE,
    XTL_WARN,
    event_mask,
)
from .ctx_base import CtxBase
from .ctx_config import ConfigMixin
from .ctx_devices import DevicesMixin
from .ctx_domains import DomainsMixin
from .ctx_events import EventsMixin
from .ctx_hooks import HooksMixin
from .ctx_moving import MovingMixin
from .ctx_operations import OperationsMixin
from .ctx_reports import DEATH_SPENT, RECORD_WORDS, REPORT_OP_DONE, ReportsMixin, event_counts  # noqa: F401
from .ctx_queries import QueriesMixin
from .values import DomainInfoRaw, RawEvent

# Not in __all__ (it never was), but callers import it from here.
from .constants import NIL_UUID  # noqa: F401

__all__ = [
    "Ctx",
    "RawEvent",
    "DomainInfoRaw",
    "event_mask",
    "EVENTMASK_ALL",
    "EVENT_DOMAIN_SHUTDOWN",
    "EVENT_DOMAIN_DEATH",
    "EVENT_DISK_EJECT",
    "EVENT_OPERATION_COMPLETE",
    "EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE",
    "XTL_DEBUG",
    "XTL_VERBOSE",
    "XTL_DETAIL",
    "XTL_PROGRESS",
    "XTL_INFO",
    "XTL_NOTICE",
    "XTL_WARN",
    "XTL_ERROR",
    "XTL_CRITICAL",
    "POLLIN",
    "POLLPRI",
    "POLLOUT",
    "POLLERR",
    "POLLHUP",
    "POLLNVAL",
    "DOMID_FIRST_RESERVED",
]


class Ctx(
    MovingMixin, DomainsMixin, DevicesMixin, ConfigMixin, ReportsMixin, OperationsMixin, QueriesMixin, EventsMixin, HooksMixin, CtxBase
):
    """
    One ``libxl_ctx``.  Make it with :meth:`alloc`; end it with :meth:`free`.

    Setup order (each at most once, before any watch or operation):
    :meth:`register_osevent_hooks`, :meth:`set_childproc_mainloop`,
    :meth:`register_event_callbacks`, :meth:`set_ao_completion`.  Until
    :meth:`register_event_callbacks` is called libxl queues events for
    :meth:`event_check`; its disaster callback is installed from the start
    (logging at critical level), so libxl never calls ``exit(-1)``.

    A context may be used from several threads, but :meth:`free` must not
    race any other call.

    Its parts, one concern and one module each (the order is the method
    resolution order; each part's ``_init_state``, ``_before_free`` and
    ``_after_free`` extend the base's):

    * :class:`~txlibxl._libxl.ctx_moving.MovingMixin`: saving,
      restoring and resuming domains;
    * :class:`~txlibxl._libxl.ctx_domains.DomainsMixin`: creating
      domains, retrieving their configuration, vCPUs, memory target,
      name, console;
    * :class:`~txlibxl._libxl.ctx_devices.DevicesMixin`: adding and
      removing disks and NICs, inserting CD-ROM media;
    * :class:`~txlibxl._libxl.ctx_config.ConfigMixin`: libxl's JSON and
      xl's disk specs into libxl's structs and back;
    * :class:`~txlibxl._libxl.ctx_operations.OperationsMixin`: the
      ``ao_how`` machinery, completion, :meth:`ao_abort`, the arguments
      kept per operation (:meth:`finish_operation`) and the power
      operations;
    * :class:`~txlibxl._libxl.ctx_queries.QueriesMixin`: the synchronous
      queries;
    * :class:`~txlibxl._libxl.ctx_events.EventsMixin`: the event callback,
      the generators and :meth:`event_check`;
    * :class:`~txlibxl._libxl.ctx_hooks.HooksMixin`: the osevent and
      childproc hooks, the sink methods and polling without hooks;
    * :class:`~txlibxl._libxl.ctx_base.CtxBase`: :meth:`alloc`,
      :meth:`free`, the log and the disaster.
    """

