"""
The C memory an asynchronous operation's arguments live in:
:class:`KeptArguments`.

libxl keeps pointers to an operation's arguments (a
``libxl_domain_config``, a device struct, a ``uint32_t *domid`` it writes
the new domid to, a vCPU bitmap) until the operation completes.  The
binding allocates them, hands them to libxl, and keeps them in one
:class:`KeptArguments` per operation, held by the
:class:`~txlibxl._libxl.binding.Ctx` under the operation's ``op_id``
(the rule, and who ends it, is in :mod:`txlibxl._libxl.binding`).

A :class:`KeptArguments` holds the cffi objects (so their memory stays
allocated), the libxl ``*_dispose`` call each needs (so what libxl
allocated inside them is freed), and a reader that turns what libxl left
in them into a Python value.  :meth:`KeptArguments.dispose` runs each
disposal exactly once; reading after it is refused.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from .. import errors

__all__ = ["KeptArguments"]


class KeptArguments:
    """
    One operation's C arguments, alive until :meth:`dispose`.

    :ivar said: what libxl logged at error level while the operation was
        started (its messages, for the error if the operation fails).
    """

    __slots__ = ("_objects", "_disposers", "_reader", "_disposed", "said")

    def __init__(self) -> None:
        self._objects: List[Any] = []
        self._disposers: List[Callable[[], None]] = []
        self._reader: Optional[Callable[[], Any]] = None
        self._disposed = False
        self.said: Tuple[str, ...] = ()

    def keep(self, obj: Any, dispose: Optional[Callable[[Any], None]] = None) -> Any:
        """
        Keep C{obj} (a cffi object) alive; C{dispose(obj)} frees what libxl
        allocated inside it (a ``libxl_*_dispose``), later, once.

        :returns: C{obj}.
        """
        self._objects.append(obj)
        if dispose is not None:
            self._disposers.append(lambda: dispose(obj))
        return obj

    def read_with(self, reader: Callable[[], Any]) -> None:
        """
        C{reader()} turns what libxl left in the arguments into the
        operation's result (a domid, a configuration's JSON...).
        """
        self._reader = reader

    def read(self) -> Any:
        """
        The operation's result, read from its arguments (``None`` for an
        operation without a reader).

        :raises txlibxl.errors.ContextStateError: the arguments were
            disposed already.
        """
        if self._disposed:
            raise errors.ContextStateError("the operation's arguments were disposed already")
        return None if self._reader is None else self._reader()

    @property
    def disposed(self) -> bool:
        """
        Whether :meth:`dispose` ran.
        """
        return self._disposed

    def dispose(self) -> None:
        """
        Run each disposal once, latest first, and let go of the memory.
        Idempotent.
        """
        if self._disposed:
            return
        self._disposed = True
        disposers, self._disposers = self._disposers, []
        for dispose in reversed(disposers):
            dispose()
        self._objects = []
        self._reader = None
