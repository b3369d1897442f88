"""
How the service waits between attempts to reopen libxl: :class:`Backoff`.

After a libxl disaster or a lost xenstored the service closes its context
and opens a new one; while the host is not back, each failed attempt waits
longer than the last, up to a ceiling, so a dead xenstored is not hammered
and a restarted one is found quickly.
"""
from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """
    Exponential delays: C{initial}, then each one C{factor} times the last,
    never more than C{maximum}; :meth:`reset` after a success.

    :raises ValueError: C{initial} or C{maximum} not positive, C{maximum}
        below C{initial}, or C{factor} below 1.
    """

    def __init__(self, initial: float = 0.1, factor: float = 2.0, maximum: float = 30.0) -> None:
        if not initial > 0:
            raise ValueError(f"the first delay must be positive, not {initial!r}")
        if not maximum >= initial:
            raise ValueError(f"the longest delay ({maximum!r}) must be at least the first ({initial!r})")
        if not factor >= 1:
            raise ValueError(f"the growth factor must be at least 1, not {factor!r}")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self._next = initial
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """The last attempt worked: start again from C{initial}."""
        self._next = self.initial
        self.attempts = 0
