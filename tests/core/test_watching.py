"""
The rules the context keeps towards watches, without libxl: a
:class:`~txlibxl.context.Context` on a ``MemoryReactorClock`` over a fake
binding whose generators the test makes report, as libxl would (one
shutdown per generator, then the death), and whose domains the test
changes (their shutdown and CPU time, which tell a repeat from news).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import attr
from twisted.trial.unittest import TestCase

from txlibxl import errors
from txlibxl._libxl import binding
from txlibxl.context import Context
from txlibxl.events import DomainDeath, DomainShutdown, ShutdownReason

from .test_operations import FakeLibxl, FakeReactor

UUID = "6a3d1b1c-4f0e-4a4e-9a55-2f5a3f6e0b01"
SUSPEND = int(ShutdownReason.SUSPEND)
POWEROFF = int(ShutdownReason.POWEROFF)


@attr.s(auto_attribs=True)
class FakeInfo:
    uuid: str
    shutdown: bool = False
    shutdown_reason: Any = None
    cpu_time: int = 0


class Generator:
    def __init__(self, domid: int, user: int) -> None:
        self.domid, self.user, self.enabled = domid, user, True


class GeneratorLibxl(FakeLibxl):
    """libxl's domain-death generators, reported by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: Dict[int, FakeInfo] = {}
        self.generators: List[Generator] = []

    def domain_info(self, domid: int, name: bool = True) -> Any:
        if domid not in self.infos:
            raise errors.DomainNotFound(call="libxl_domain_info")
        return self.infos[domid]

    def evenable_domain_death(self, domid: int, user: int, uuid: Any = None) -> Generator:
        generator = Generator(domid, user)
        self.generators.append(generator)
        return generator

    def evdisable_domain_death(self, generator: Generator) -> None:
        generator.enabled = False

    def enabled(self) -> List[Generator]:
        return [g for g in self.generators if g.enabled]

    # libxl's side
    def shut_down(self, domid: int, reason: int, cpu_time: int) -> None:
        self.infos[domid] = attr.evolve(self.infos[domid], shutdown=True, shutdown_reason=reason, cpu_time=cpu_time)

    def resume(self, domid: int) -> None:
        self.infos[domid] = attr.evolve(self.infos[domid], shutdown=False, shutdown_reason=None)

    def report(self, generator: Generator, kind: int, reason: Any = None) -> None:
        self.on_event(binding.RawEvent(kind, generator.domid, UUID, generator.user, reason))


class WatchingTestCase(TestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.libxl = FakeLibxl.current = GeneratorLibxl()
        self.patch(binding, "Ctx", GeneratorLibxl)
        self.ctx = Context(self.reactor, xenstore_liveness=None)
        self.libxl.infos[7] = FakeInfo(UUID)

    def turn(self) -> None:
        self.reactor.advance(0)

    def events(self, watch: Any) -> List[Any]:
        seen: List[Any] = []
        while True:
            d = watch.next_event()
            if not d.called:
                d.cancel()
                self.failureResultOf(d)
                return seen
            result: List[Any] = []
            d.addBoth(result.append)
            if not isinstance(result[0], (DomainShutdown, DomainDeath)):
                return seen
            seen.append(result[0])

    def suspended(self) -> Tuple[Any, Generator]:
        """A watch on domain 7, which suspended: the watch has re-armed."""
        watch = self.ctx.watch_domain(7)
        first = self.libxl.enabled()[0]
        self.libxl.shut_down(7, SUSPEND, 1000)
        self.libxl.report(first, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        self.turn()
        self.assertEqual([e.reason for e in self.events(watch)], [ShutdownReason.SUSPEND])
        (second,) = self.libxl.enabled()
        self.assertIsNot(second, first)
        return watch, second


class RearmTests(WatchingTestCase):
    def test_the_new_generator_is_enabled_before_the_old_one_is_disabled(self) -> None:
        watch, second = self.suspended()
        self.assertEqual(len(self.libxl.generators), 2)
        self.assertEqual(self.ctx.watches, 1)

    def test_a_report_of_the_domain_still_suspended_and_not_run_since_is_a_repeat(self) -> None:
        watch, second = self.suspended()
        self.libxl.report(second, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        self.turn()
        self.assertEqual(self.events(watch), [])
        # The repeat used up that generator: the watch has re-armed again.
        (third,) = self.libxl.enabled()
        self.assertIsNot(third, second)

    def test_a_report_of_the_domain_suspended_again_after_running_is_news(self) -> None:
        watch, second = self.suspended()
        self.libxl.resume(7)
        self.libxl.shut_down(7, SUSPEND, 1500)  # it ran for 500 ns
        self.libxl.report(second, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        self.turn()
        self.assertEqual([e.reason for e in self.events(watch)], [ShutdownReason.SUSPEND])

    def test_a_different_reason_is_news_without_a_look(self) -> None:
        watch, second = self.suspended()
        self.libxl.resume(7)
        self.libxl.shut_down(7, POWEROFF, 1000)
        self.libxl.report(second, binding.EVENT_DOMAIN_SHUTDOWN, POWEROFF)
        self.turn()
        self.assertEqual([e.reason for e in self.events(watch)], [ShutdownReason.POWEROFF])

    def test_a_death_the_old_generator_reported_behind_the_suspend_still_arrives(self) -> None:
        watch = self.ctx.watch_domain(7)
        first = self.libxl.enabled()[0]
        self.libxl.shut_down(7, SUSPEND, 1000)
        # Both reported before the next turn: the re-arm disables the
        # generator whose death report is already queued.
        self.libxl.report(first, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        del self.libxl.infos[7]
        self.libxl.report(first, binding.EVENT_DOMAIN_DEATH)
        self.turn()
        self.assertEqual([type(e) for e in self.events(watch)], [DomainShutdown, DomainDeath])
        self.assertFalse(watch.active)
        self.assertEqual(self.libxl.enabled(), [])
        self.assertEqual(self.ctx.watches, 0)

    def test_a_late_shutdown_report_of_the_old_generator_is_dropped(self) -> None:
        watch = self.ctx.watch_domain(7)
        first = self.libxl.enabled()[0]
        self.libxl.shut_down(7, SUSPEND, 1000)
        self.libxl.report(first, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        self.libxl.report(first, binding.EVENT_DOMAIN_SHUTDOWN, SUSPEND)
        self.turn()
        self.assertEqual(len(self.events(watch)), 1)
