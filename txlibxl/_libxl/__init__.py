"""
txlibxl's binding to libxenlight: the only code in txlibxl that touches
cffi objects or C memory.  It knows no reactor (no module here imports an
event loop or a layer above the binding).

The C side and its build:

* ``c/txl.c``, ``c/txl.h``: the C half of the binding (the xentoollog
  logger, the hook trampolines, ``fork_replacement``, the event
  accessors), compiled into the cffi module.  ``txl.h`` pins
  ``LIBXL_API_VERSION`` and declares what the module exposes.
* ``c/txl_capture.c``: what libxl logs at error level during one call,
  kept for the error it raises; ``c/txl_config.c``: xl's disk specs
  (libxlutil), a create's progress ``how``, vCPU bitmaps.
* :mod:`txlibxl._libxl._build`: the cffi builder (API mode) of the
  compiled module ``txlibxl._libxl._cffi``.
* :mod:`txlibxl._libxl.loader`: imports that module on first use only,
  never when txlibxl is imported (so that a test fixture can preload the
  simulated host's libxenctrl shim before libxenlight is loaded).

What the binding's callers import:

* :mod:`txlibxl._libxl.binding`: :class:`~txlibxl._libxl.binding.Ctx`,
  one ``libxl_ctx`` with its hooks, callbacks and calls, and every name
  the layers above use (its ``__all__``, and ``NIL_UUID``).
* :mod:`txlibxl._libxl.xenstore`: a libxenstore connection of txlibxl's
  own.

Shared by the parts of :class:`~txlibxl._libxl.binding.Ctx`:

* :mod:`txlibxl._libxl.native`: the compiled module loaded once with its
  ``extern "Python"`` callbacks installed, which find their context and
  call its methods; the registry of live contexts; the guard against
  calling libxl from inside a callback; the binding's logger.
* :mod:`txlibxl._libxl.constants`: libxl's and Xen's numbers (event
  types and :func:`~txlibxl._libxl.constants.event_mask`, xentoollog
  levels, poll bits, reserved domids, the nil UUID).
* :mod:`txlibxl._libxl.checks`: the argument checks (bad input raises
  :class:`~txlibxl.errors.InvalidArgument` before C is called).
* :mod:`txlibxl._libxl.values`: what is copied out of C,
  :class:`~txlibxl._libxl.values.RawEvent` and
  :class:`~txlibxl._libxl.values.DomainInfoRaw`, and their readers.
* :mod:`txlibxl._libxl.capture`: :class:`~txlibxl._libxl.capture.LibxlSays`,
  libxl's error messages during a call, for the error it raises.
* :mod:`txlibxl._libxl.kept`: :class:`~txlibxl._libxl.kept.KeptArguments`,
  an asynchronous operation's C arguments, alive until disposed (the rule:
  :mod:`txlibxl._libxl.binding`, "Ownership").

:class:`~txlibxl._libxl.binding.Ctx` is put together from one class per
concern, each in a module of its own:

* :mod:`txlibxl._libxl.ctx_base`: ``CtxBase``, the context's life
  (``alloc``, ``free``, the state every part shares, the guard every
  call passes, the log and disaster callbacks).  Every part derives
  from it.
* :mod:`txlibxl._libxl.ctx_hooks`: ``HooksMixin``, libxl's osevent and
  childproc hooks and the calls back into libxl (``occurred_fd``,
  ``occurred_timeout``, ``child_reaped``, ``beforepoll``/``afterpoll``).
* :mod:`txlibxl._libxl.ctx_events`: ``EventsMixin``, the event callback,
  the domain-death and disk-eject generators, ``event_check``.
* :mod:`txlibxl._libxl.ctx_operations`: ``OperationsMixin``, the
  ``ao_how`` machinery (``_start_ao``, completion, ``ao_abort``) and the
  domain operations (shutdown, reboot, destroy, pause, unpause).
* :mod:`txlibxl._libxl.ctx_queries`: ``QueriesMixin``, the synchronous
  queries (``list_domains``, ``domain_info``, names, disks).
* :mod:`txlibxl._libxl.ctx_config`: ``ConfigMixin``, libxl's JSON (and
  xl's disk specs) into libxl's structs and back.
* :mod:`txlibxl._libxl.ctx_domains`: ``DomainsMixin(ConfigMixin,
  OperationsMixin)``, domain building: create, retrieve the
  configuration, vCPUs, memory target, rename, console tty.
* :mod:`txlibxl._libxl.ctx_devices`: ``DevicesMixin(ConfigMixin,
  OperationsMixin)``, disks and NICs added and removed, CD-ROM media.

A part keeps its own state and takes part in the context's life by
extending, each calling ``super()`` first: ``_init_state(log)`` (set up
its attributes; it runs for a context not yet allocated too),
``_before_free(call)`` (raise :class:`~txlibxl.errors.ContextStateError`
if libxl must finish something first) and ``_after_free()`` (forget what
referred into the freed context).  Every call into libxl starts with
``ctx = self._enter(call)``, after the argument checks.

A group of operations (as ``ctx_domains.py`` and ``ctx_devices.py``) is a
module of its own with ``class DomainsMixin(OperationsMixin)``: its
methods check their arguments with :mod:`.checks` and start each
operation with ``self._start_ao(call, op_id, initiate, kept)``, where
``initiate(ctx, ao_how)`` makes the C call and ``kept`` (a
:class:`~txlibxl._libxl.kept.KeptArguments`) holds every C argument it
passes (libxl requires them to stay valid until the completion) and reads
the result from them.  Its C declarations go into ``_build.py``'s cdef
(libxl's functions) or ``txl.h`` (txlibxl's own C), and the class goes
into ``Ctx``'s bases in :mod:`.binding`, before ``OperationsMixin``.

Importing this package loads nothing native.
"""
