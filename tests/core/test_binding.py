"""
The libxl binding's rules that need no Xen host: lazy loading, what the
compiled module exposes, argument checks, and the hook trampolines driven
through their C entry points.

(The same binding against a real libxenlight on a simulated host:
``tests/core/test_binding_on_sim.py``.)
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from typing import Any, List, Optional, Tuple

from twisted.trial import unittest
from zope.interface import implementer

from txlibxl import errors
from txlibxl.interfaces import IOSEventHooks
from txlibxl._libxl import binding, loader

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _preload_sim_shim() -> None:
    """
    Load the simulated host's xc shim (inert without a host) before
    libxenlight, as ``txlibxl.testing.use_simulated_host`` requires: the
    simulated-host tests that run later in this process need libxenlight's
    ``xc_*`` calls to reach it.
    """
    if loader.is_loaded():
        return
    spec = importlib.util.find_spec("txlibxl.sim._xcshim")
    if spec is not None and spec.origin:
        ctypes.CDLL(spec.origin, mode=ctypes.RTLD_GLOBAL)


def native() -> Tuple[Any, Any]:
    """
    The compiled binding, loaded in this process (after the sim's shim).
    """
    _preload_sim_shim()
    try:
        return loader.load()
    except loader.BindingUnavailable as e:
        raise unittest.SkipTest(f"the binding is not built: {e}")


def run_python(code: str) -> str:
    """
    Run C{code} in a fresh interpreter (nothing loaded yet); its stdout.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = PROJECT + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("XENSTORED_PATH", "LD_PRELOAD", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stderr.decode()}")
    return done.stdout.decode()


def unallocated_ctx(log: Any = None) -> binding.Ctx:
    """
    A context whose C side was never allocated: it behaves as a freed one,
    but its argument checks and C trampolines work.
    """
    native()
    ctx = binding.Ctx.__new__(binding.Ctx)
    ctx._init_state(log or (lambda level, text: None))
    return ctx


class LoaderTests(unittest.TestCase):
    def test_importing_txlibxl_loads_no_libxenlight(self) -> None:
        out = run_python(
            """
            import importlib
            import txlibxl, txlibxl.errors, txlibxl.events, txlibxl.interfaces
            import txlibxl._libxl, txlibxl._libxl.binding, txlibxl._libxl.loader
            try:
                import txlibxl.context
            except ImportError:
                pass  # a layer above may not exist yet; it must not load libxl either
            maps = open("/proc/self/maps").read()
            print(txlibxl._libxl.loader.is_loaded(), "libxenlight" in maps)
            """
        )
        self.assertEqual(out.split(), ["False", "False"])

    def test_load_imports_the_binding_once_on_first_use(self) -> None:
        native()
        out = run_python(
            """
            from txlibxl._libxl import loader
            first = loader.load()
            maps = open("/proc/self/maps").read()
            print(loader.is_loaded(), first is loader.load(), "libxenlight" in maps)
            """
        )
        self.assertEqual(out.split(), ["True", "True", "True"])

    def test_a_missing_binding_is_a_typed_import_error(self) -> None:
        out = run_python(
            """
            import sys
            sys.modules["txlibxl._libxl._cffi"] = None   # as if never built
            from txlibxl._libxl import loader
            try:
                loader.load()
            except loader.BindingUnavailable as e:
                print(isinstance(e, ImportError), loader.is_loaded())
            """
        )
        self.assertEqual(out.split(), ["True", "False"])


class CompiledModuleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.ffi, self.lib = native()

    def test_api_version_is_the_newest_the_installed_header_accepts(self) -> None:
        with open("/usr/include/libxl.h") as f:
            header = f.read()
        check = re.search(r"#ifdef LIBXL_API_VERSION\n#if (.*?)#error Unknown", header, re.S)
        accepted = [int(v, 16) for v in re.findall(r"LIBXL_API_VERSION != (0x[0-9a-fA-F]+)", check.group(1))]
        self.assertEqual(self.lib.LIBXL_API_VERSION, max(accepted))

    def test_event_types_are_libxls(self) -> None:
        lib = self.lib
        self.assertEqual(
            [
                binding.EVENT_DOMAIN_SHUTDOWN,
                binding.EVENT_DOMAIN_DEATH,
                binding.EVENT_DISK_EJECT,
                binding.EVENT_OPERATION_COMPLETE,
                binding.EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE,
            ],
            [
                lib.LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN,
                lib.LIBXL_EVENT_TYPE_DOMAIN_DEATH,
                lib.LIBXL_EVENT_TYPE_DISK_EJECT,
                lib.LIBXL_EVENT_TYPE_OPERATION_COMPLETE,
                lib.LIBXL_EVENT_TYPE_DOMAIN_CREATE_CONSOLE_AVAILABLE,
            ],
        )

    def test_log_levels_are_xentoollogs(self) -> None:
        for name in ("DEBUG", "VERBOSE", "DETAIL", "PROGRESS", "INFO", "NOTICE", "WARN", "ERROR", "CRITICAL"):
            self.assertEqual(getattr(binding, "XTL_" + name), getattr(self.lib, "XTL_" + name), name)

    def test_reserved_domids_start_where_xens_do(self) -> None:
        self.assertEqual(binding.DOMID_FIRST_RESERVED, self.lib.DOMID_FIRST_RESERVED)

    def test_console_types_are_libxls(self) -> None:
        from txlibxl._libxl.ctx_domains import CONSOLE_TYPES

        for name, value in CONSOLE_TYPES.items():
            self.assertEqual(value, getattr(self.lib, "LIBXL_CONSOLE_TYPE_" + name.upper()), name)

    def test_the_calls_the_binding_makes_are_exposed(self) -> None:
        for name in (
            "txl_ctx_alloc",
            "libxl_ctx_free",
            "txl_register_osevent_hooks",
            "txl_register_event_callbacks",
            "txl_set_childproc_mainloop",
            "libxl_osevent_occurred_fd",
            "libxl_osevent_occurred_timeout",
            "txl_osevent_beforepoll",
            "txl_osevent_afterpoll",
            "libxl_childproc_reaped",
            "libxl_childproc_sigchld_occurred",
            "libxl_evenable_domain_death",
            "libxl_evdisable_domain_death",
            "libxl_evenable_disk_eject",
            "libxl_evdisable_disk_eject",
            "txl_event_check",
            "libxl_event_free",
            "libxl_ao_abort",
            "libxl_domain_shutdown",
            "libxl_domain_reboot",
            "libxl_domain_destroy",
            "libxl_domain_pause",
            "libxl_domain_unpause",
            "libxl_list_domain",
            "libxl_dominfo_list_free",
            "libxl_domain_info",
            "libxl_dominfo_dispose",
            "libxl_domid_to_name",
            "libxl_name_to_domid",
        ):
            self.assertTrue(callable(getattr(self.lib, name, None)), name)

    def test_an_ao_how_names_the_op_id_as_for_callback(self) -> None:
        # Two ao_hows for one op_id are byte-identical: libxl_ao_abort
        # matches the operation by comparing them.
        ffi, lib = self.ffi, self.lib
        first, second = ffi.new("libxl_asyncop_how *"), ffi.new("libxl_asyncop_how *")
        lib.txl_ao_how_init(first, 42)
        lib.txl_ao_how_init(second, 42)
        self.assertEqual(ffi.buffer(first)[:], ffi.buffer(second)[:])
        lib.txl_ao_how_init(second, 43)
        self.assertNotEqual(ffi.buffer(first)[:], ffi.buffer(second)[:])

    def test_this_process_is_not_a_forked_child(self) -> None:
        self.assertEqual(self.lib.txl_in_forked_child(), 0)


class EventMaskTests(unittest.TestCase):
    def test_bit_n_stands_for_event_type_n(self) -> None:
        self.assertEqual(binding.event_mask(binding.EVENT_DOMAIN_SHUTDOWN), 0b10)
        self.assertEqual(
            binding.event_mask(binding.EVENT_DOMAIN_SHUTDOWN, binding.EVENT_DOMAIN_DEATH), 0b110
        )

    def test_all_is_every_bit_of_a_uint64(self) -> None:
        self.assertEqual(binding.EVENTMASK_ALL, 2**64 - 1)

    def test_a_bad_type_is_refused(self) -> None:
        for bad in (-1, 64, "1", True):
            self.assertRaises(errors.InvalidArgument, binding.event_mask, bad)


def no_xen() -> Optional[str]:
    for path in ("/dev/xen/privcmd", "/proc/xen/privcmd"):
        if os.path.exists(path):
            return f"{path} exists: this host may run Xen"
    return None


class AllocTests(unittest.TestCase):
    def test_alloc_without_xen_raises_the_typed_error_of_libxls_code(self) -> None:
        native()
        if no_xen():
            raise unittest.SkipTest(no_xen())
        out = run_python(
            """
            from txlibxl import errors
            from txlibxl._libxl import binding
            messages = []
            try:
                binding.Ctx.alloc(lambda level, text: messages.append((level, text)))
            except errors.LibxlError as e:
                print(type(e).__name__, e.code, e.call)
            print(len(messages) > 0, all(level == binding.XTL_ERROR for level, _ in messages))
            print("cannot open libxc handle" in " ".join(text for _, text in messages))
            """
        )
        self.assertEqual(
            out.split(), ["GeneralFailure", "-3", "libxl_ctx_alloc", "True", "True", "True"]
        )

    def test_messages_below_the_minimum_level_are_not_passed_on(self) -> None:
        native()
        if no_xen():
            raise unittest.SkipTest(no_xen())
        out = run_python(
            """
            from txlibxl import errors
            from txlibxl._libxl import binding
            messages = []
            try:
                binding.Ctx.alloc(lambda l, t: messages.append(t), binding.XTL_CRITICAL)
            except errors.LibxlError:
                pass
            print(len(messages))
            """
        )
        self.assertEqual(out.split(), ["0"])

    def test_log_must_be_callable(self) -> None:
        self.assertRaises(errors.InvalidArgument, binding.Ctx.alloc, "log")

    def test_min_level_must_be_a_xentoollog_level(self) -> None:
        for bad in (0, 11, "info", 5.0, True):
            self.assertRaises(errors.InvalidArgument, binding.Ctx.alloc, print, bad)

    def test_a_ctx_is_made_by_alloc_only(self) -> None:
        self.assertRaises(TypeError, binding.Ctx)


class ArgumentCheckTests(unittest.TestCase):
    """
    Bad input raises InvalidArgument naming the C call, before C is
    called: these checks run on a context that was never allocated, where
    any good call raises ContextClosed instead.
    """

    def setUp(self) -> None:
        self.ctx = unallocated_ctx()

    def assertRefused(self, call: str, method: Any, *args: Any) -> None:
        error = self.assertRaises(errors.InvalidArgument, method, *args)
        self.assertEqual(error.call, call)
        self.assertEqual(error.code, errors.ERROR_INVAL)

    def test_a_domid_must_be_an_ordinary_domains(self) -> None:
        ctx = self.ctx
        methods = [
            ("libxl_domain_info", ctx.domain_info, ()),
            ("libxl_domid_to_name", ctx.domid_to_name, ()),
            ("libxl_evenable_domain_death", ctx.evenable_domain_death, (1,)),
            ("libxl_evenable_disk_eject", ctx.evenable_disk_eject, ("hdc", 1)),
            ("libxl_domain_shutdown", ctx.domain_shutdown, (1,)),
            ("libxl_domain_reboot", ctx.domain_reboot, (1,)),
            ("libxl_domain_destroy", ctx.domain_destroy, (1,)),
            ("libxl_domain_pause", ctx.domain_pause, (1,)),
            ("libxl_domain_unpause", ctx.domain_unpause, (1,)),
        ]
        for call, method, rest in methods:
            for bad in (-1, 0x7FF0, 0xFFFFFFFF, True, "5", 5.0, None):
                self.assertRefused(call, method, bad, *rest)
            self.assertRaises(errors.ContextClosed, method, 0x7FEF, *rest)

    def test_a_vdev_must_be_a_non_empty_str(self) -> None:
        for bad in ("", None, b"hdc", "hd\0c", 5):
            self.assertRefused("libxl_evenable_disk_eject", self.ctx.evenable_disk_eject, 1, bad, 1)

    def test_a_domain_name_must_be_a_non_empty_str(self) -> None:
        for bad in ("", None, b"web1", "we\0b"):
            self.assertRefused("libxl_name_to_domid", self.ctx.name_to_domid, bad)
        self.assertRaises(errors.ContextClosed, self.ctx.name_to_domid, "web1")

    def test_a_user_value_must_fit_a_uint64(self) -> None:
        for bad in (-1, 2**64, "1", None):
            self.assertRefused("libxl_evenable_domain_death", self.ctx.evenable_domain_death, 1, bad)
        self.assertRaises(errors.ContextClosed, self.ctx.evenable_domain_death, 1, 2**64 - 1)

    def test_an_op_id_must_be_a_positive_uint64(self) -> None:
        for bad in (0, -1, 2**64, "1"):
            self.assertRefused("libxl_domain_destroy", self.ctx.domain_destroy, 1, bad)
            self.assertRefused("libxl_ao_abort", self.ctx.ao_abort, bad)

    def test_fd_reports_need_a_token_an_fd_and_poll_bits(self) -> None:
        call = "libxl_osevent_occurred_fd"
        self.assertRefused(call, self.ctx.occurred_fd, 0, 3, 1, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, -1, 1, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, 3, 1 << 15, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, 3, 1, -1)
        self.assertRefused(call, self.ctx.occurred_fd, 2**64, 3, 1, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, 1 << 31, 1, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, True, 1, 1)
        self.assertRefused(call, self.ctx.occurred_fd, 7, 3, 1.0, 1)
        self.assertRefused(call, self.ctx.occurred_fd, "7", 3, 1, 1)
        self.assertRefused("libxl_osevent_occurred_timeout", self.ctx.occurred_timeout, 0)
        self.assertRaises(errors.ContextClosed, self.ctx.occurred_fd, 7, 3, 1, 1)

    def test_a_reaped_child_needs_a_pid(self) -> None:
        self.assertRefused("libxl_childproc_reaped", self.ctx.child_reaped, 0, 0)
        self.assertRefused("libxl_childproc_reaped", self.ctx.child_reaped, 12, 1.5)

    def test_callbacks_must_be_callable(self) -> None:
        call = "libxl_event_register_callbacks"
        self.assertRefused(call, self.ctx.register_event_callbacks, None, print)
        self.assertRefused(call, self.ctx.register_event_callbacks, print, None)
        self.assertRefused(call, self.ctx.register_event_callbacks, print, print, -1)
        self.assertRefused("set_ao_completion", self.ctx.set_ao_completion, 3)
        self.assertRefused("libxl_event_check", self.ctx.event_check, binding.EVENTMASK_ALL, "yes")

    def test_hooks_must_have_the_six_methods(self) -> None:
        error = self.assertRaises(
            errors.InvalidArgument, self.ctx.register_osevent_hooks, object()
        )
        self.assertIn("fd_register", error.message)
        self.assertRefused("libxl_childproc_setmode", self.ctx.set_childproc_mainloop, object())

    def test_only_a_generator_handle_can_be_disabled(self) -> None:
        self.assertRefused("libxl_evdisable_domain_death", self.ctx.evdisable_domain_death, object())
        self.assertRefused("libxl_evdisable_disk_eject", self.ctx.evdisable_disk_eject, None)

    def test_afterpoll_entries_are_fd_events_revents(self) -> None:
        self.assertRefused("libxl_osevent_afterpoll", self.ctx.afterpoll, [(3, 1)])
        self.assertRaises(errors.ContextClosed, self.ctx.afterpoll, [(3, 1, 0)])


class UnallocatedContextTests(unittest.TestCase):
    def test_every_libxl_call_raises_context_closed(self) -> None:
        ctx = unallocated_ctx()
        for method, args in [
            (ctx.list_domains, ()),
            (ctx.domain_info, (0,)),
            (ctx.sigchld_occurred, ()),
            (ctx.beforepoll, ()),
            (ctx.event_check, ()),
            (ctx.occurred_timeout, (1,)),
            (ctx.register_event_callbacks, (print, print)),
            (ctx.set_ao_completion, (print,)),
        ]:
            self.assertRaises(errors.ContextClosed, method, *args)

    def test_free_is_idempotent(self) -> None:
        ctx = unallocated_ctx()
        ctx.free()
        ctx.free()
        self.assertTrue(ctx.closed)


@implementer(IOSEventHooks)
class RecordingHooks:
    """
    Hooks that record what libxl asked for, and can be told to fail.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []
        self.fail: Optional[BaseException] = None
        self.result: Any = "use a fresh registration"
        self.during: Any = None

    def _do(self, *call: Any) -> Any:
        self.calls.append(call)
        if self.during is not None:
            self.during()
        if self.fail is not None:
            raise self.fail
        if self.result == "use a fresh registration":
            return ("registration", len(self.calls))
        return self.result

    def fd_register(self, fd: int, events: int, token: int) -> Any:
        return self._do("fd_register", fd, events, token)

    def fd_modify(self, fd: int, registration: Any, events: int) -> Any:
        return self._do("fd_modify", fd, registration, events)

    def fd_deregister(self, fd: int, registration: Any) -> None:
        self._do("fd_deregister", fd, registration)

    def timeout_register(self, deadline: float, token: int) -> Any:
        return self._do("timeout_register", deadline, token)

    def timeout_modify(self, registration: Any, deadline: Optional[float]) -> Any:
        return self._do("timeout_modify", registration, deadline)

    def timeout_deregister(self, registration: Any) -> None:
        self._do("timeout_deregister", registration)


class HookTrampolineTests(unittest.TestCase):
    """
    libxl's osevent hooks, called through the C functions libxl calls.
    """

    def setUp(self) -> None:
        self.ffi, self.lib = native()
        self.ctx = unallocated_ctx()
        self.hooks = RecordingHooks()
        self.ctx._hooks = self.hooks  # as register_osevent_hooks would
        self.user = self.ctx._handle

    def fd_register(self, fd: int = 6, events: int = 1, token: int = 0x1234) -> Tuple[int, Any]:
        out = self.ffi.new("void **")
        rc = self.lib.txl_fd_register(self.user, fd, out, events, self.ffi.cast("void *", token))
        return rc, out

    def timeval(self, seconds: int, microseconds: int) -> Any:
        tv = self.ffi.new("struct timeval *")
        tv.tv_sec, tv.tv_usec = seconds, microseconds
        return tv[0]

    def test_a_registration_is_stored_under_an_id_from_1_and_the_token_is_the_pointer(self) -> None:
        rc, out = self.fd_register(fd=6, events=1, token=0x1234)
        self.assertEqual(rc, 0)
        self.assertEqual(int(self.ffi.cast("uintptr_t", out[0])), 1)
        self.assertEqual(self.hooks.calls, [("fd_register", 6, 1, 0x1234)])
        rc, out = self.fd_register(fd=6, events=4, token=0x5678)
        self.assertEqual(int(self.ffi.cast("uintptr_t", out[0])), 2)

    def test_modify_and_deregister_get_the_registration_back(self) -> None:
        _, out = self.fd_register()
        self.assertEqual(self.lib.txl_fd_modify(self.user, 6, out, 4), 0)
        self.lib.txl_fd_deregister(self.user, 6, out[0])
        self.assertEqual(
            self.hooks.calls,
            [
                ("fd_register", 6, 1, 0x1234),
                ("fd_modify", 6, ("registration", 1), 4),
                ("fd_deregister", 6, ("registration", 2)),
            ],
        )
        self.assertEqual(self.ctx.osevent_registrations, 0)

    def test_events_zero_is_passed_on(self) -> None:
        rc, _ = self.fd_register(events=0)
        self.assertEqual((rc, self.hooks.calls[0][2]), (0, 0))

    def test_a_failing_register_returns_osevent_reg_fail_and_stores_nothing(self) -> None:
        self.hooks.fail = ZeroDivisionError("hook broke")
        rc, out = self.fd_register()
        self.assertEqual(rc, errors.ERROR_OSEVENT_REG_FAIL)
        self.assertEqual(out[0], self.ffi.NULL)
        self.assertEqual(self.ctx.osevent_registrations, 0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_a_register_returning_none_fails(self) -> None:
        self.hooks.result = None
        rc, _ = self.fd_register()
        self.assertEqual(rc, errors.ERROR_OSEVENT_REG_FAIL)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_a_failing_modify_returns_osevent_reg_fail_and_keeps_the_registration(self) -> None:
        _, out = self.fd_register()
        self.hooks.fail = ZeroDivisionError("hook broke")
        self.assertEqual(self.lib.txl_fd_modify(self.user, 6, out, 4), errors.ERROR_OSEVENT_REG_FAIL)
        self.assertEqual(self.lib.txl_timeout_modify(self.user, out, self.timeval(0, 0)), -12)
        self.hooks.fail = None
        self.lib.txl_fd_deregister(self.user, 6, out[0])
        self.assertEqual(self.hooks.calls[-1], ("fd_deregister", 6, ("registration", 1)))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_a_failing_deregister_is_logged_not_raised(self) -> None:
        _, out = self.fd_register()
        self.hooks.fail = ZeroDivisionError("hook broke")
        self.lib.txl_fd_deregister(self.user, 6, out[0])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.ctx.osevent_registrations, 0)

    def test_a_timeout_deadline_is_wall_clock_seconds(self) -> None:
        out = self.ffi.new("void **")
        rc = self.lib.txl_timeout_register(
            self.user, out, self.timeval(1700000000, 250000), self.ffi.cast("void *", 0x99)
        )
        self.assertEqual(rc, 0)
        self.assertEqual(self.hooks.calls, [("timeout_register", 1700000000.25, 0x99)])

    def test_modify_to_zero_means_as_soon_as_possible(self) -> None:
        out = self.ffi.new("void **")
        self.lib.txl_timeout_register(self.user, out, self.timeval(1700000000, 0), self.ffi.cast("void *", 1))
        self.assertEqual(self.lib.txl_timeout_modify(self.user, out, self.timeval(0, 0)), 0)
        self.assertEqual(self.lib.txl_timeout_modify(self.user, out, self.timeval(5, 0)), 0)
        self.assertEqual(
            self.hooks.calls[1:],
            [("timeout_modify", ("registration", 1), None), ("timeout_modify", ("registration", 2), 5.0)],
        )

    def test_timeout_deregister_is_passed_on(self) -> None:
        out = self.ffi.new("void **")
        self.lib.txl_timeout_register(self.user, out, self.timeval(1, 0), self.ffi.cast("void *", 1))
        self.lib.txl_timeout_deregister(self.user, out[0])
        self.assertEqual(self.hooks.calls[-1], ("timeout_deregister", ("registration", 1)))

    def test_calling_libxl_from_a_hook_is_refused(self) -> None:
        seen: List[BaseException] = []

        def reenter() -> None:
            try:
                self.ctx.occurred_fd(0x1234, 6, 1, 1)
            except BaseException as e:
                seen.append(e)

        self.hooks.during = reenter
        self.fd_register()
        self.assertEqual(len(seen), 1)
        self.assertIsInstance(seen[0], errors.ReentrantCall)
        # Outside the hook the same call is no longer reentrant.
        self.assertRaises(errors.ContextClosed, self.ctx.occurred_fd, 0x1234, 6, 1, 1)


class DisasterTrampolineTests(unittest.TestCase):
    def setUp(self) -> None:
        self.ffi, self.lib = native()
        self.ctx = unallocated_ctx()

    def test_a_disaster_reaches_the_callback_and_is_remembered(self) -> None:
        seen = []
        self.ctx._on_disaster = lambda *args: seen.append(args)  # as register_event_callbacks would
        self.lib.txl_disaster(self.ctx._handle, 2, b"watch pipe broken", 32)
        self.assertEqual(seen, [(2, "watch pipe broken", 32)])
        self.assertEqual(
            (self.ctx.disaster.type, self.ctx.disaster.message, self.ctx.disaster.errnoval),
            (2, "watch pipe broken", 32),
        )

    def test_the_callback_may_not_call_libxl(self) -> None:
        seen = []

        def on_disaster(*args: Any) -> None:
            try:
                self.ctx.list_domains()
            except BaseException as e:
                seen.append(e)

        self.ctx._on_disaster = on_disaster
        self.lib.txl_disaster(self.ctx._handle, 0, b"oom", -1)
        self.assertIsInstance(seen[0], errors.ReentrantCall)

    def test_without_a_callback_the_disaster_is_logged(self) -> None:
        from twisted.logger import globalLogPublisher

        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.lib.txl_disaster(self.ctx._handle, 0, b"oom", -1)
        self.assertTrue(
            any("oom" in str(e.get("disaster", "")) for e in events), events
        )


class EventTrampolineTests(unittest.TestCase):
    """
    libxl's ``event_occurs`` reaches the context's callback as a
    :class:`~txlibxl._libxl.binding.RawEvent`, driven here with events
    made as libxl makes them.
    """

    UUID = bytes(range(0x10, 0x20))
    UUID_TEXT = "10111213-1415-1617-1819-1a1b1c1d1e1f"

    def setUp(self) -> None:
        self.ffi, self.lib = native()
        self.ctx = unallocated_ctx()
        self.seen: List[binding.RawEvent] = []
        self.ctx._on_event = self.seen.append  # as register_event_callbacks would

    def occur(self, kind: int, domid: int, for_user: int, uuid: Any = None, detail: int = 0) -> None:
        event = self.lib.txl_event_make(kind, domid, for_user, uuid or self.ffi.NULL, detail)
        self.assertNotEqual(event, self.ffi.NULL)
        self.lib.txl_event_occurs(self.ctx._queue, event)
        self.ctx._take_reports(True)  # as after the libxl call it came from

    def test_a_death_carries_the_uuid_read_when_its_generator_was_enabled(self) -> None:
        self.ctx._uuids[(5, 7)] = self.UUID_TEXT
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 7)
        self.assertEqual(self.seen, [binding.RawEvent(binding.EVENT_DOMAIN_DEATH, 5, self.UUID_TEXT, 7)])

    def test_without_a_known_uuid_the_nil_uuid_stands(self) -> None:
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 8)
        self.assertEqual(self.seen[0].uuid, binding.NIL_UUID)

    def test_a_uuid_libxl_filled_in_wins(self) -> None:
        self.ctx._uuids[(5, 7)] = binding.NIL_UUID
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 7, uuid=self.UUID)
        self.assertEqual(self.seen[0].uuid, self.UUID_TEXT)

    def test_a_shutdown_carries_its_reason_and_nothing_else(self) -> None:
        self.occur(binding.EVENT_DOMAIN_SHUTDOWN, 9, 1, detail=3)
        raw = self.seen[0]
        self.assertEqual((raw.type, raw.domid, raw.for_user, raw.shutdown_reason), (1, 9, 1, 3))
        self.assertEqual((raw.vdev, raw.disk, raw.rc), (None, None, None))

    def test_an_operation_completion_carries_its_rc(self) -> None:
        self.occur(binding.EVENT_OPERATION_COMPLETE, 9, 4, detail=-3)
        self.assertEqual((self.seen[0].rc, self.seen[0].shutdown_reason), (-3, None))

    def test_a_disk_eject_is_read_whole_with_its_disk(self) -> None:
        self.ctx._eject_vdevs[(9, 2)] = "xvdc"
        self.occur(binding.EVENT_DISK_EJECT, 9, 2)
        raw = self.seen[0]
        self.assertEqual((raw.type, raw.vdev), (binding.EVENT_DISK_EJECT, "xvdc"))
        self.assertEqual(raw.disk["vdev"], "xvdc")

    def test_a_failing_callback_is_logged_and_the_next_event_still_arrives(self) -> None:
        def broken(raw: binding.RawEvent) -> None:
            self.ctx._on_event = self.seen.append
            raise RuntimeError("application bug")

        self.ctx._on_event = broken
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 7)
        self.occur(binding.EVENT_DOMAIN_DEATH, 6, 8)
        self.assertEqual([raw.domid for raw in self.seen], [6])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
