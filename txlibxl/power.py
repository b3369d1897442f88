"""
A domain's power operations on a :class:`~txlibxl.context.Context`:
shutdown, reboot, destroy, pause, unpause (:class:`PowerMixin`).

Each returns a Deferred (:mod:`txlibxl.operations`); cancelling it calls
``libxl_ao_abort``, and each docstring says what a cancel leaves done.
"""
from __future__ import annotations

from typing import Any

from .operations import OperationsMixin

__all__ = ["PowerMixin"]


class PowerMixin(OperationsMixin):
    """
    Shutdown, reboot, destroy, pause and unpause of a domain.
    """

    def shutdown(self, domid: int) -> Any:
        """
        Ask domain C{domid} to shut down (PV control node or ACPI).

        :returns: a Deferred that fires with ``None`` once the guest has
            acknowledged the request (not when it has shut down: watch it
            for that), or fails with a :class:`~txlibxl.errors.LibxlError`.
            Cancelling it stops the wait for the guest's acknowledgement,
            not the request: libxl wrote it to the guest's
            ``control/shutdown`` node first, and it stays there, so a guest
            that reads it later still shuts down
            (the :class:`~txlibxl.operations.OperationCancelled`'s
            ``settled`` fires with ``False``).
        """
        return self._operation(
            "libxl_domain_shutdown", domid, lambda op: self._ctx.domain_shutdown(domid, op.op_id)
        )

    def reboot(self, domid: int) -> Any:
        """
        Ask domain C{domid} to reboot; like :meth:`shutdown`, cancelling
        included (the reboot request stays written).
        """
        return self._operation(
            "libxl_domain_reboot", domid, lambda op: self._ctx.domain_reboot(domid, op.op_id)
        )

    def destroy(self, domid: int) -> Any:
        """
        Destroy domain C{domid}: its devices are torn down and the domain
        is gone when the Deferred fires with ``None``.

        A cancelled destroy still destroys: the abort only cuts short
        libxl's waits for the devices' backends, and libxl goes on
        destroying the domain without them, seconds later perhaps.  The
        Deferred fails with :class:`~txlibxl.operations.OperationCancelled`
        at once; its ``settled`` fires with ``True`` once the domain is
        gone.
        """
        return self._operation(
            "libxl_domain_destroy", domid, lambda op: self._ctx.domain_destroy(domid, op.op_id)
        )

    def pause(self, domid: int) -> Any:
        """
        Pause domain C{domid}; the Deferred fires with ``None`` when done.
        libxl pauses the domain inside the call that starts the
        operation, so cancelling the Deferred changes nothing: it has the
        result.
        """
        return self._operation(
            "libxl_domain_pause", domid, lambda op: self._ctx.domain_pause(domid, op.op_id)
        )

    def unpause(self, domid: int) -> Any:
        """
        Unpause domain C{domid}; the Deferred fires with ``None`` when done.
        For a PV or PVH domain libxl unpauses it inside the call that
        starts the operation, so cancelling changes nothing; for an HVM
        domain libxl resumes its device model first, and a cancel before
        that is done leaves the domain paused.
        """
        return self._operation(
            "libxl_domain_unpause", domid, lambda op: self._ctx.domain_unpause(domid, op.op_id)
        )
