"""
The two event loops a :class:`~txlibxl.context.Context` runs on: Twisted's
reactor and asyncio's loop, each with its futures made through txaio.

A context asks its loop for four things and nothing else: its futures and
their helpers (``tx``, a txaio API object), one call on the next turn
(:meth:`~TwistedLoop.call_soon`), the way in from another thread
(:meth:`~TwistedLoop.call_from_thread`, :meth:`~TwistedLoop.on_loop_thread`),
and libxl's hooks, children and xenstore watcher built for that loop
(``txlibxl.loop``).  :class:`TwistedLoop` gives Deferreds,
:class:`AsyncioLoop` ``asyncio.Future`` objects; the watches, operations
and the context itself are the same classes on both.

**The framework is chosen once per process.**  txaio keeps one choice
for the whole process (``txaio.use_twisted()`` or ``txaio.use_asyncio()``),
and its loggers follow it.  The first context opened picks it; a context
on the other framework in the same process is refused with
:class:`FrameworkConflict` before libxl is touched.  A Twisted program
(``twistd``, ``trial``) and an asyncio program are two processes; a test
suite run by trial that wants to drive the asyncio side runs it in a
child process.  Twisted's own asyncio reactor (``--reactor=asyncio``) is
Twisted: its contexts give Deferreds.

**Cancelling** a future of an operation aborts it the same way on both:
``Deferred.cancel()`` and ``asyncio.Future.cancel()`` (or cancelling the
task awaiting it) call the operation's canceller at once, which calls
``libxl_ao_abort``; if libxl accepts, the future fails with
:class:`~txlibxl.operations.OperationCancelled` (a
``twisted.internet.defer.CancelledError`` and an
``asyncio.CancelledError``), whose ``settled`` says later what libxl did.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, TypeVar, Union

import txaio

# The Deferred class only: importing it installs no reactor.
from twisted.internet.defer import Deferred

from . import errors
# Here, not inside the method that uses it: a context asks on every call
# into libxl, and an import statement that names ``twisted.python`` (a
# module proxy) costs about 15 us each time.
from .loop.reactor_osevents import on_reactor_thread

__all__ = ["Future", "FrameworkConflict", "TwistedLoop", "AsyncioLoop", "AbortableFuture"]

_T = TypeVar("_T")

#: What an operation, a watch or :meth:`~txlibxl.context.Context.close`
#: returns: a ``Deferred`` on Twisted, an ``asyncio.Future`` on asyncio.
#: Both can be awaited, and both are cancelled with ``cancel()``.
Future = Union[Deferred[_T], asyncio.Future[_T]]


class FrameworkConflict(errors.TxlibxlError, RuntimeError):
    """
    The process already uses the other framework through txaio (txaio's
    choice is per process): a Twisted context in an asyncio process, or
    the other way round.
    """


def _choose(framework: str) -> None:
    use = txaio.use_twisted if framework == "twisted" else txaio.use_asyncio
    try:
        use()
    except RuntimeError as e:
        raise FrameworkConflict(
            f"this process already uses txaio with another framework ({e}); "
            f"a {framework} context needs a process of its own"
        ) from None


class TwistedLoop:
    """
    A context's loop on the Twisted reactor C{reactor} (``IReactorFDSet``,
    ``IReactorTime``, ``IReactorThreads``): Deferreds.

    :raises FrameworkConflict: the process uses asyncio through txaio.
    """

    name = "twisted"

    def __init__(self, reactor: Any) -> None:
        _choose("twisted")
        self.reactor = reactor
        self.tx = txaio.with_config(loop=reactor)

    def call_soon(self, f: Callable[[], None]) -> Any:
        """Call C{f} on the next reactor turn; returns what ``cancel()`` stops."""
        return self.reactor.callLater(0, f)

    @staticmethod
    def cancel_call(call: Any) -> None:
        """Stop a call of L{call_soon} that has not run yet."""
        if call.active():
            call.cancel()

    def call_from_thread(self, f: Callable[[], None]) -> None:
        """Call C{f} on the reactor's thread (``callFromThread``)."""
        self.reactor.callFromThread(f)

    #: Whether the caller may touch the reactor directly: it runs on the
    #: reactor's thread, or on the main thread before any reactor ran (the
    #: hooks' own test, asked after every call into libxl that reported).
    on_loop_thread = staticmethod(on_reactor_thread)

    def osevents(self, sink: Any) -> Any:
        """libxl's osevent hooks on the reactor."""
        from .loop.reactor_osevents import ReactorOSEvents

        return ReactorOSEvents(self.reactor, sink)

    def children(self, sink: Any) -> Any:
        """libxl's children, reaped by the reactor."""
        from .loop.reactor_children import ReactorChildReaper

        return ReactorChildReaper(self.reactor, sink)

    def xenstore_watcher(self, connection: Any, on_fire: Any, on_lost: Any, interval: float) -> Any:
        """A xenstore watcher on the reactor."""
        from .loop.reactor_xenstore import XenstoreWatcher

        return XenstoreWatcher(self.reactor, connection, on_fire=on_fire, on_lost=on_lost, liveness_interval=interval)

    @staticmethod
    def logger(log: Any) -> Any:
        """C{log} (a txaio logger, that is ``twisted.logger``) as the context uses it."""
        return log


class AbortableFuture(asyncio.Future):  # type: ignore[type-arg]
    """
    An ``asyncio.Future`` whose ``cancel()`` calls its canceller first and
    at once, as ``Deferred.cancel()`` does (txaio's asyncio futures call it
    a turn later, after the future is already cancelled, too late to say
    what the cancel did).

    The canceller may settle the future itself: with an exception (an
    operation's :class:`~txlibxl.operations.OperationCancelled`, which is
    an ``asyncio.CancelledError``; ``cancel()`` then returns ``True``) or
    with a result (libxl had finished: ``cancel()`` returns ``False``, the
    caller gets the real result).  If it leaves the future pending, the
    future is cancelled as usual.
    """

    _canceller: Optional[Callable[["AbortableFuture"], None]] = None

    def cancel(self, msg: Any = None) -> bool:
        if self.done():
            return False
        canceller, self._canceller = self._canceller, None
        if canceller is not None:
            canceller(self)
            if self.done():
                return not self.cancelled() and self.exception() is not None
        return super().cancel(msg)


class _AsyncioTx:
    """
    txaio's asyncio API bound to one loop, with futures that take a
    canceller made :class:`AbortableFuture`.
    """

    def __init__(self, loop: Any) -> None:
        self._api = txaio.with_config(loop=loop)
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def create_future(self, canceller: Optional[Callable[[Any], None]] = None) -> Any:
        if canceller is None:
            return self._loop.create_future()
        future = AbortableFuture(loop=self._loop)
        future._canceller = canceller
        return future


class AsyncioLoop:
    """
    A context's loop on the asyncio selector event loop C{loop}:
    ``asyncio.Future`` objects, libxl's children reaped through pidfds.

    :raises FrameworkConflict: the process uses Twisted through txaio.
    :raises TypeError: C{loop} is not an asyncio selector event loop.
    """

    name = "asyncio"

    def __init__(self, loop: Any) -> None:
        from .loop.asyncio_osevents import LoopThread, check_loop

        self.loop = check_loop(loop)
        _choose("asyncio")
        self._thread = LoopThread(loop)
        self.tx = _AsyncioTx(loop)

    def call_soon(self, f: Callable[[], None]) -> Any:
        """Call C{f} on the next loop turn; returns what ``cancel()`` stops."""
        return self.loop.call_soon(f)

    @staticmethod
    def cancel_call(call: Any) -> None:
        """Stop a call of L{call_soon} that has not run yet."""
        call.cancel()

    def call_from_thread(self, f: Callable[[], None]) -> None:
        """Call C{f} on the loop's thread (``call_soon_threadsafe``)."""
        self._thread.call_from_thread(f)

    def on_loop_thread(self) -> bool:
        """Whether the caller may touch the loop directly."""
        return self._thread.on_loop_thread()

    def osevents(self, sink: Any) -> Any:
        """libxl's osevent hooks on the loop."""
        from .loop.asyncio_osevents import AsyncioOSEvents

        return AsyncioOSEvents(self.loop, sink)

    def children(self, sink: Any) -> Any:
        """libxl's children, reaped through pidfds on the loop."""
        from .loop.asyncio_children import AsyncioChildReaper

        return AsyncioChildReaper(self.loop, sink)

    def xenstore_watcher(self, connection: Any, on_fire: Any, on_lost: Any, interval: float) -> Any:
        """A xenstore watcher on the loop."""
        from .loop.asyncio_xenstore import AsyncioXenstoreWatcher

        return AsyncioXenstoreWatcher(self.loop, connection, on_fire, on_lost, liveness_interval=interval)

    @staticmethod
    def logger(log: Any) -> Any:
        """C{log} (a txaio logger, that is standard ``logging``) given ``failure()``."""
        from .loop.logs import loop_logger

        return loop_logger(log, "txlibxl.context")
