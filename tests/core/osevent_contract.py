"""
libxl's osevent contract as tests, once for every loop.

Each mixin below is one part of the contract (fd registrations, hang-ups,
timeouts, threads, teardown, and the rules that need a real loop).  A
loop's test module combines it with a *fixture* mixin that says how that
loop is driven; ``tests/core/test_osevent.py`` (Twisted) and
``tests/core/test_asyncio_osevent.py`` (asyncio) do.  Rules whose trigger
only exists on one loop (Twisted's ``connectionLost``, asyncio's reader
callbacks) are tested in that loop's module.  "Reactor" in a test's name
means the event loop, whichever it is.

What a unit fixture provides (the loop is a fake driven by the test; the
hooks' wall clock is the fake loop's clock; the test thread counts as the
loop's thread):

* ``self.real``, the hooks object; ``self.hooks``, the same behind the
  re-entrancy guard; ``self.sink``, a ``RecordingSink``;
  ``make_hooks(clock=None)``, another hooks object on the same loop;
* ``readers()``, ``writers()``: the watches the loop reads and writes;
* ``fire_read(watch)``, ``fire_write(watch)``: the loop found the watch's
  fd ready;
* ``report_hangup(watch)``, ``report_error(watch)``: the loop saw the
  reader hang up, the writer fail;
* ``now()``, ``advance(seconds)``, ``pending_timers()``,
  ``timer_times()``: the loop's clock and timers;
* ``run_thread_calls(reverse=False)``: run the calls other threads
  marshalled, in their order or reversed;
* ``assertLoggedFailures(exception_type, count)``.

What a real-loop fixture provides: ``self.hooks``, ``self.sink``,
``self.real``, ``readers()``, ``now_wall()``, and awaitables
``sleep(seconds)``, ``waiter()`` (an awaitable and its resolve function)
and ``in_worker(f, *args)`` (run on a worker thread).
"""
from __future__ import annotations

import os
import time
from typing import Any, Tuple

from zope.interface.verify import verifyObject

from txlibxl.interfaces import IOSEventHooks
from txlibxl.loop.registrations import (
    FDRegistration,
    OSEventsClosed,
    OSEventStats,
    TimeoutRegistration,
)

from .loop_fixtures import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLPRI, in_thread, is_open


class FDRegistrationContract:
    """
    fd_register / fd_modify / fd_deregister.
    """

    def test_provides_IOSEventHooks(self) -> None:
        self.assertTrue(verifyObject(IOSEventHooks, self.real))

    def test_pollin_registration_makes_a_reader(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.assertEqual(self.readers(), {self.watch_of(reg)})
        self.assertEqual(self.writers(), set())

    def test_pollpri_alone_makes_a_reader(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLPRI, 1)
        self.assertEqual(self.readers(), {self.watch_of(reg)})

    def test_pollout_registration_makes_a_writer(self) -> None:
        _, w = self.pipe()
        reg = self.hooks.fd_register(w, POLLOUT, 1)
        self.assertEqual(self.writers(), {self.watch_of(reg)})
        self.assertEqual(self.readers(), set())

    def test_zero_events_keeps_the_registration_but_watches_nothing(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, 0, 1)
        self.assertEqual((self.readers(), self.writers()), (set(), set()))
        self.assertEqual(self.real.stats(), OSEventStats(fds=1, fd_registrations=1, timers=0))
        self.assertTrue(reg.live)

    def test_one_watch_per_fd_carries_every_registration(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLIN | POLLPRI, 2)
        self.assertIs(self.watch_of(a), self.watch_of(b))
        self.assertEqual(len(self.readers()), 1)
        self.fire_read(self.watch_of(a))
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])

    def test_interest_is_the_or_of_the_registrations(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLOUT, 2)
        watch = self.watch_of(a)
        self.assertEqual((self.readers(), self.writers()), ({watch}, {watch}))
        self.hooks.fd_deregister(r, a)
        self.assertEqual((self.readers(), self.writers()), (set(), {watch}))
        self.hooks.fd_deregister(r, b)

    def test_sink_exception_is_logged_and_the_other_registrations_still_run(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(r, POLLIN, 2)

        def explode(token: int, *rest: int) -> None:
            if token == 1:
                raise ZeroDivisionError("libxl binding failed")

        self.sink.on_fd = explode
        self.fire_read(self.watch_of(a))
        self.assertEqual(self.sink.tokens(), [1, 2])
        self.assertLoggedFailures(ZeroDivisionError, 1)
        self.assertIn(self.watch_of(a), self.readers())

    def test_modify_changes_the_interest(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        self.assertIs(self.hooks.fd_modify(r, reg, POLLOUT), reg)
        self.assertEqual((self.readers(), self.writers()), (set(), {watch}))
        self.fire_write(watch)
        self.assertEqual(self.sink.fds, [(1, r, POLLOUT, POLLOUT)])

    def test_modify_to_zero_stops_watching_but_keeps_the_registration(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_modify(r, reg, 0)
        self.assertEqual(self.readers(), set())
        self.assertEqual(self.real.stats().fd_registrations, 1)

    def test_deregister_removes_the_reader_synchronously(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual((self.readers(), self.writers()), (set(), set()))
        self.assertFalse(reg.live)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_fileno_is_a_private_duplicate_while_registered_and_minus_one_after(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        dup = watch.fileno()
        self.assertNotEqual(dup, r)
        self.assertEqual(os.fstat(dup).st_ino, os.fstat(r).st_ino)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual(watch.fileno(), -1)
        self.assertFalse(is_open(dup))

    def test_deregister_inside_dispatch_silences_a_later_registration(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLIN, 2)

        def libxl(token: int, *rest: int) -> None:
            if token == 1:
                self.hooks.fd_deregister(r, b)

        self.sink.on_fd = libxl
        self.fire_read(self.watch_of(a))
        self.assertEqual(self.sink.tokens(), [1])
        self.hooks.fd_deregister(r, a)

    def test_fd_number_can_be_registered_again_at_once(self) -> None:
        r, _ = self.pipe()
        old = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, old)
        new = self.hooks.fd_register(r, POLLIN, 2)
        self.assertIsNot(self.watch_of(new), self.watch_of(old))
        self.assertEqual(self.readers(), {self.watch_of(new)})
        self.fire_read(self.watch_of(new))
        self.assertEqual(self.sink.tokens(), [2])

    def test_stale_event_for_a_dropped_watch_reaches_nobody(self) -> None:
        r, _ = self.pipe()
        old = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        stale = self.watch_of(old)
        self.hooks.fd_deregister(r, old)
        self.hooks.fd_register(r, POLLIN | POLLOUT, 2)
        self.fire_read(stale)
        self.fire_write(stale)
        self.report_hangup(stale)
        self.assertEqual(self.sink.fds, [])

    def test_bad_arguments_raise_typed_errors_and_change_nothing(self) -> None:
        r, _ = self.pipe()
        self.assertRaises(TypeError, self.hooks.fd_register, "3", POLLIN, 1)
        self.assertRaises(TypeError, self.hooks.fd_register, r, True, 1)
        self.assertRaises(ValueError, self.hooks.fd_register, -1, POLLIN, 1)
        self.assertRaises(ValueError, self.hooks.fd_register, r, 0x10000, 1)
        self.assertRaises(TypeError, self.hooks.fd_register, r, POLLIN, None)
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.assertRaises(TypeError, self.hooks.fd_modify, r, object(), POLLIN)
        self.assertRaises(ValueError, self.hooks.fd_modify, r + 1, reg, POLLOUT)
        other = self.make_hooks()
        self.assertRaises(TypeError, other.fd_deregister, r, reg)
        self.assertEqual(reg.events, POLLIN)
        self.assertEqual(self.real.stats(), OSEventStats(1, 1, 0))

    def test_registering_a_closed_fd_fails_and_changes_nothing(self) -> None:
        r, w = self.pipe()
        self.close(r)
        self.close(w)
        self.assertRaises(OSError, self.hooks.fd_register, r, POLLIN, 1)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.assertEqual(self.readers(), set())

    def test_modify_of_a_deregistered_registration_raises(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, reg)
        self.assertRaises(ValueError, self.hooks.fd_modify, r, reg, POLLOUT)

    def test_second_deregister_is_ignored(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, reg)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_no_occurred_fd_from_inside_a_hook_even_when_the_fd_is_ready(self) -> None:
        r, w = self.pipe()
        os.write(w, b"x")
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_modify(r, reg, POLLIN | POLLOUT)
        self.assertEqual(self.sink.fds, [])
        self.hooks.fd_deregister(r, reg)


class HangupContract:
    """
    POLLHUP/POLLERR: reported to every registration, then paused.
    """

    def hangup(self) -> Tuple[int, FDRegistration, FDRegistration]:
        r, w = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, 0, 2)
        self.close(w)
        return r, a, b

    def test_hangup_reaches_every_registration_as_pollhup(self) -> None:
        r, a, b = self.hangup()
        self.report_hangup(self.watch_of(a))
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])
        for token, fd, events, revents in self.sink.fds:
            self.assertTrue(revents & POLLHUP)
            self.assertEqual(fd, r)

    def test_hangup_keeps_the_registrations_for_libxl_to_deregister(self) -> None:
        r, a, b = self.hangup()
        self.report_hangup(self.watch_of(a))
        self.assertTrue(a.live and b.live)
        self.assertEqual(self.real.stats(), OSEventStats(1, 2, 0))
        self.hooks.fd_deregister(r, a)
        self.hooks.fd_deregister(r, b)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_hung_up_fd_is_not_watched_so_the_reactor_cannot_spin(self) -> None:
        r, a, b = self.hangup()
        self.report_hangup(self.watch_of(a))
        self.assertEqual((self.readers(), self.writers()), (set(), set()))

    def test_modify_ends_the_hangup_pause(self) -> None:
        r, a, b = self.hangup()
        self.report_hangup(self.watch_of(a))
        self.hooks.fd_modify(r, a, POLLIN)
        self.assertEqual(self.readers(), {self.watch_of(a)})

    def test_new_registration_ends_the_hangup_pause(self) -> None:
        r, a, b = self.hangup()
        self.report_hangup(self.watch_of(a))
        self.hooks.fd_register(r, POLLIN, 3)
        self.assertEqual(self.readers(), {self.watch_of(a)})

    def test_pollerr_is_reported_as_observed(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(w, POLLOUT, 1)
        self.close(r)
        self.report_error(self.watch_of(reg))
        [(token, fd, events, revents)] = self.sink.fds
        self.assertEqual((token, fd, events), (1, w, POLLOUT))
        self.assertTrue(revents & POLLERR)


class TimeoutContract:
    """
    timeout_register / timeout_modify / timeout_deregister, on a fake loop
    whose clock is also the hooks' wall clock.
    """

    def setUp(self) -> None:
        super().setUp()
        self.advance(1_000_000.0)

    def test_timeout_fires_once_the_wall_clock_reaches_the_deadline(self) -> None:
        now = self.now()
        self.hooks.timeout_register(now + 5.0, 7)
        self.advance(4.9)
        self.assertEqual(self.sink.timeouts, [])
        self.advance(0.1)
        self.assertEqual(self.sink.timeouts, [7])

    def test_delay_is_deadline_minus_the_injected_wall_clock(self) -> None:
        hooks = self.make_hooks(clock=lambda: 500.0)
        hooks.timeout_register(503.0, 1)
        self.assertEqual(self.timer_times(), [self.now() + 3.0])
        hooks.close()

    def test_past_deadline_fires_on_the_next_reactor_turn_not_inside_the_hook(self) -> None:
        self.hooks.timeout_register(self.now() - 60.0, 7)
        self.hooks.timeout_register(0.0, 8)  # abs={0,0}
        self.assertEqual(self.sink.timeouts, [])
        self.advance(0)
        self.assertEqual(sorted(self.sink.timeouts), [7, 8])

    def test_modify_to_None_fires_as_soon_as_possible(self) -> None:
        reg = self.hooks.timeout_register(self.now() + 3600.0, 7)
        self.assertIs(self.hooks.timeout_modify(reg, None), reg)
        self.assertEqual(self.sink.timeouts, [])
        self.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_modify_to_a_deadline_moves_the_timer(self) -> None:
        reg = self.hooks.timeout_register(self.now() + 3600.0, 7)
        self.hooks.timeout_modify(reg, self.now() + 2.0)
        self.advance(2.0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_occurred_timeout_is_called_exactly_once_per_registration(self) -> None:
        reg = self.hooks.timeout_register(self.now() + 1.0, 7)
        self.hooks.timeout_modify(reg, None)
        self.hooks.timeout_modify(reg, None)
        self.advance(0)
        self.hooks.timeout_modify(reg, None)
        self.advance(3600)
        self.assertEqual(self.sink.timeouts, [7])
        self.assertEqual(self.pending_timers(), [])
        self.assertEqual(self.real.stats().timers, 0)

    def test_modify_after_the_timer_fired_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.now(), 7)
        self.advance(0)
        self.assertIs(self.hooks.timeout_modify(reg, None), reg)
        self.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_modify_racing_the_firing_timer_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.now(), 7)
        self.sink.on_timeout = lambda token: self.hooks.timeout_modify(reg, None)
        self.advance(0)
        self.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_deregister_cancels_the_timer(self) -> None:
        reg = self.hooks.timeout_register(self.now() + 1.0, 7)
        self.hooks.timeout_deregister(reg)
        self.assertEqual(self.pending_timers(), [])
        self.advance(10)
        self.assertEqual(self.sink.timeouts, [])
        self.assertEqual(self.real.stats().timers, 0)

    def test_deregister_after_firing_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.now(), 7)
        self.advance(0)
        self.hooks.timeout_deregister(reg)
        self.assertEqual(self.sink.timeouts, [7])

    def test_bad_timeout_arguments_raise_typed_errors(self) -> None:
        self.assertRaises(TypeError, self.hooks.timeout_register, "soon", 1)
        self.assertRaises(ValueError, self.hooks.timeout_register, float("nan"), 1)
        self.assertRaises(ValueError, self.hooks.timeout_register, float("inf"), 1)
        self.assertRaises(TypeError, self.hooks.timeout_register, 1.0, 1.5)
        self.assertRaises(TypeError, self.hooks.timeout_modify, object(), None)
        self.assertRaises(TypeError, self.hooks.timeout_deregister, None)
        self.assertEqual(self.pending_timers(), [])

    def test_sink_exception_in_occurred_timeout_is_logged(self) -> None:
        self.hooks.timeout_register(0.0, 7)

        def explode(token: int) -> None:
            raise ZeroDivisionError("libxl binding failed")

        self.sink.on_timeout = explode
        self.advance(0)
        self.assertLoggedFailures(ZeroDivisionError, 1)


class ThreadContract:
    """
    Hooks called on another thread: the record exists at once, the loop
    changes happen on the loop's thread, in whatever order the marshalled
    calls run.
    """

    def test_register_off_thread_returns_the_record_and_watches_on_the_reactor_turn(
        self,
    ) -> None:
        r, _ = self.pipe()
        reg = in_thread(self.hooks.fd_register, r, POLLIN, 1)
        self.assertTrue(reg.live)
        self.assertEqual(self.real.stats(), OSEventStats(1, 1, 0))
        self.assertEqual(self.readers(), set())
        self.run_thread_calls()
        self.assertEqual(self.readers(), {self.watch_of(reg)})
        self.hooks.fd_deregister(r, reg)

    def test_deregister_marshalled_after_register_wins_in_either_order(self) -> None:
        for reverse in (False, True):
            r, _ = self.pipe()
            reg = in_thread(self.hooks.fd_register, r, POLLIN, 1)
            dup = self.watch_of(reg).fileno()
            in_thread(self.hooks.fd_deregister, r, reg)
            self.run_thread_calls(reverse=reverse)
            self.assertEqual(self.readers(), set())
            self.assertFalse(is_open(dup))
            self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_off_thread_deregister_survives_libxl_closing_and_reusing_the_number(
        self,
    ) -> None:
        r, w = self.pipe()
        old = self.hooks.fd_register(r, POLLIN, 1)
        stale = self.watch_of(old)
        in_thread(self.hooks.fd_deregister, r, old)
        self.close(r)  # what libxl does right after fd_deregister
        r2, w2 = self.pipe()
        self.assertEqual(r2, r)  # the kernel hands the number out again
        new = self.hooks.fd_register(r2, POLLIN, 2)
        self.run_thread_calls()
        self.assertEqual(self.readers(), {self.watch_of(new)})
        self.assertEqual(stale.fileno(), -1)
        self.fire_read(stale)
        self.fire_read(self.watch_of(new))
        self.assertEqual(self.sink.tokens(), [2])
        self.hooks.fd_deregister(r2, new)

    def test_modify_off_thread_applies_on_the_reactor_turn(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        in_thread(self.hooks.fd_modify, r, reg, POLLOUT)
        self.assertEqual(reg.events, POLLOUT)
        self.run_thread_calls()
        watch = self.watch_of(reg)
        self.assertEqual((self.readers(), self.writers()), (set(), {watch}))
        self.hooks.fd_deregister(r, reg)

    def test_timeout_registered_off_thread_is_armed_on_the_reactor_turn(self) -> None:
        reg = in_thread(self.hooks.timeout_register, 0.0, 7)
        self.assertIsInstance(reg, TimeoutRegistration)
        self.assertEqual(self.pending_timers(), [])
        self.run_thread_calls()
        self.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_timeout_deregistered_off_thread_never_fires_in_either_order(self) -> None:
        for reverse in (False, True):
            reg = in_thread(self.hooks.timeout_register, 0.0, 7)
            in_thread(self.hooks.timeout_deregister, reg)
            self.run_thread_calls(reverse=reverse)
            self.advance(0)
            self.assertEqual(self.pending_timers(), [])
        self.assertEqual(self.sink.timeouts, [])

    def test_asap_modify_off_thread_wins_in_either_order(self) -> None:
        for reverse in (False, True):
            reg = in_thread(self.hooks.timeout_register, self.now() + 3600.0, 7)
            in_thread(self.hooks.timeout_modify, reg, None)
            self.run_thread_calls(reverse=reverse)
            self.advance(0)
        self.assertEqual(self.sink.timeouts, [7, 7])


class CloseContract:
    """
    close(): nothing left in the loop, for teardown after libxl_ctx_free.
    """

    def test_close_removes_every_watch_and_timer_and_reports_the_leftovers(self) -> None:
        r, w = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(w, POLLOUT, 2)
        self.hooks.fd_register(r, 0, 3)
        self.hooks.timeout_register(self.now() + 10, 4)
        dup = self.watch_of(a).fileno()
        self.assertEqual(self.real.close(), OSEventStats(fds=2, fd_registrations=3, timers=1))
        self.assertEqual((self.readers(), self.writers()), (set(), set()))
        self.assertEqual(self.pending_timers(), [])
        self.assertFalse(is_open(dup))
        self.assertTrue(is_open(r) and is_open(w))
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.advance(20)
        self.assertEqual(self.sink.timeouts, [])

    def test_close_also_drops_watches_retired_off_thread_but_not_yet_reconciled(
        self,
    ) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        in_thread(self.hooks.fd_deregister, r, reg)
        self.assertEqual(self.real.close(), OSEventStats(0, 0, 0))
        self.assertEqual(self.readers(), set())
        self.run_thread_calls()

    def test_hooks_after_close_raise_and_deregistration_is_a_no_op(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        treg = self.hooks.timeout_register(0.0, 2)
        self.real.close()
        self.assertRaises(OSEventsClosed, self.hooks.fd_register, r, POLLIN, 3)
        self.assertRaises(OSEventsClosed, self.hooks.timeout_register, 0.0, 4)
        self.assertRaises(OSEventsClosed, self.hooks.timeout_modify, treg, None)
        self.hooks.fd_deregister(r, reg)
        self.hooks.timeout_deregister(treg)
        self.assertEqual(self.readers(), set())

    def test_close_off_the_reactor_thread_is_refused(self) -> None:
        self.assertRaises(RuntimeError, in_thread, self.real.close)

    def test_stats_count_fds_registrations_and_timers(self) -> None:
        r, w = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(r, POLLPRI, 2)
        self.hooks.fd_register(w, 0, 3)
        self.hooks.timeout_register(self.now() + 1, 4)
        self.assertEqual(self.real.stats(), OSEventStats(fds=2, fd_registrations=3, timers=1))
        self.real.close()


class RealLoopContract:
    """
    The rules that need a real loop.  Each test is a coroutine; the fixture
    runs it on its loop.
    """

    def first_fd_event(self) -> Any:
        waiter, resolve = self.waiter()

        def on_fd(token: int, fd: int, events: int, revents: int) -> None:
            self.sink.on_fd = None
            resolve((token, fd, events, revents))

        self.sink.on_fd = on_fd
        return waiter

    async def test_readable_pipe_is_reported_as_pollin(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 11)
        event = self.first_fd_event()
        os.write(w, b"x")
        got = await event
        self.assertEqual(got, (11, r, POLLIN, POLLIN))
        self.hooks.fd_deregister(r, reg)

    async def test_writable_pipe_is_reported_as_pollout(self) -> None:
        r, w = self.pipe()
        event = self.first_fd_event()
        reg = self.hooks.fd_register(w, POLLOUT, 12)
        got = await event
        self.assertEqual(got, (12, w, POLLOUT, POLLOUT))
        self.hooks.fd_deregister(w, reg)

    async def test_hangup_reaches_libxl_and_the_reactor_does_not_spin(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 13)
        watch = reg._watch
        event = self.first_fd_event()
        self.close(w)
        token, fd, events, revents = await event
        self.assertEqual((token, fd), (13, r))
        # Twisted's poll/epoll reactors and every asyncio selector report
        # the hang-up itself; Twisted's select and asyncio reactors report
        # the fd readable and libxl's re-poll finds POLLHUP.
        self.assertTrue(revents & (POLLHUP | POLLIN), revents)
        if self.hangups_are_reported:
            self.assertTrue(revents & POLLHUP, revents)
        if revents & POLLHUP:
            self.assertNotIn(watch, self.readers())
            # One more loop turn: no further report while paused.
            await self.sleep(0.05)
            self.assertEqual(len(self.sink.fds), 1)
        self.assertTrue(reg.live)
        self.hooks.fd_deregister(r, reg)
        self.assertNotIn(watch, self.readers())

    async def test_fd_number_reused_after_deregister_reports_only_the_new_token(self) -> None:
        r, w = self.pipe()
        os.write(w, b"old")
        old = self.hooks.fd_register(r, POLLIN, 21)

        def libxl(token: int, fd: int, events: int, revents: int) -> None:
            # libxl deregisters, closes, and opens a new fd with the same
            # number, all inside one occurred_fd call.
            if token != 21:
                return
            self.hooks.fd_deregister(fd, old)
            self.close(fd)
            r2, w2 = self.pipe()
            self.assertEqual(r2, fd)
            self.new = (r2, w2, self.hooks.fd_register(r2, POLLIN, 22))

        self.sink.on_fd = libxl
        while not self.sink.fds:
            await self.sleep(0.01)
        self.assertEqual(self.sink.tokens(), [21])
        r2, w2, new = self.new
        event = self.first_fd_event()
        os.write(w2, b"new")
        got = await event
        self.assertEqual(got, (22, r2, POLLIN, POLLIN))
        self.assertEqual(self.sink.tokens(), [21, 22])
        self.hooks.fd_deregister(r2, new)

    async def test_timeouts_fire_from_the_reactor(self) -> None:
        fired, resolve = self.waiter()
        self.sink.on_timeout = lambda token: resolve(token) if token == 32 else None
        self.hooks.timeout_register(time.time() - 10, 31)  # in the past
        reg = self.hooks.timeout_register(time.time() + 3600, 32)
        self.hooks.timeout_modify(reg, None)  # ASAP
        self.assertEqual(self.sink.timeouts, [])
        await fired
        if self.sink.timeouts != [31, 32]:
            await self.sleep(0.01)
        self.assertEqual(sorted(self.sink.timeouts), [31, 32])

    async def test_hooks_on_a_worker_thread(self) -> None:
        r, w = self.pipe()
        reg = await self.in_worker(self.hooks.fd_register, r, POLLIN, 41)
        fired, resolve = self.waiter()
        self.sink.on_timeout = resolve
        await self.in_worker(self.hooks.timeout_register, 0.0, 42)
        event = self.first_fd_event()
        os.write(w, b"x")
        self.assertEqual((await event), (41, r, POLLIN, POLLIN))
        self.assertEqual((await fired), 42)

        def deregister_and_close() -> None:
            self.hooks.fd_deregister(r, reg)
            self.close(r)  # libxl closes right after deregistering

        await self.in_worker(deregister_and_close)
        await self.sleep(0.01)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.assertNotIn(reg._watch, self.readers())
