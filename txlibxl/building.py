"""
Building and changing domains on a :class:`~txlibxl.context.Context`
(:class:`BuildingMixin`): create a domain from its configuration, read
its configuration back, set its vCPUs and memory target, rename it, find
its console.  Devices are :mod:`txlibxl.devices`'.

Configurations are mappings in libxl's JSON shape (:mod:`txlibxl.config`).
The asynchronous operations return Deferreds (:mod:`txlibxl.operations`);
the calls libxl only offers synchronously (a few xenstore transactions,
nothing to wait for) return their result.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Mapping, Optional

from . import config as _config
from . import errors
from .domids import check_domid
from .events import ConsoleAvailable
from .operations import NEW_DOMAIN, OperationsMixin, _Operation

__all__ = ["BuildingMixin"]


class BuildingMixin(OperationsMixin):
    """
    Domain creation and changes.
    """

    _failure: Optional[BaseException]
    _closed: bool

    def create(
        self,
        config: Mapping[str, Any],
        on_console: Optional[Callable[[ConsoleAvailable], None]] = None,
    ) -> Any:
        """
        Create a PV or PVH domain from C{config}, a ``libxl_domain_config``
        in libxl's JSON shape (:mod:`txlibxl.config`).  The domain is left
        paused, as libxl leaves it (``xl create`` unpauses it next):
        :meth:`unpause` starts it.

        A config without a UUID (or with the nil one) is given a fresh
        one, on a copy: C{config} itself is never changed.  The
        configuration is checked first: what libxl would refuse, or ignore
        without a word (unknown keys, values of the wrong JSON type), fails
        the Deferred with :class:`~txlibxl.errors.InvalidConfiguration`,
        and nothing is created.

        :param on_console: called once with a
            :class:`~txlibxl.events.ConsoleAvailable` when the domain's
            console can be attached to (libxl's console progress report),
            always before the Deferred fires with the domid, and not at
            all if the create fails first.  A callback rather than a
            second Deferred: the report is optional (libxl makes it only on
            the way to success), so a second Deferred would have to fail
            with every failed create and be consumed by every caller, even
            those who never attach a console.  Its exceptions are logged.
        :returns: a Deferred that fires with the new domain's domid once it
            is built, its devices are attached and its console is up; or fails with a
            :class:`~txlibxl.errors.LibxlError` carrying what libxl logged.
            A failed create leaves no domain behind: libxl destroys what it
            had built itself, and should it leave the domain anyway, txlibxl
            destroys it before the Deferred fails.
            Cancelling aborts libxl's create (``libxl_ao_abort``).  libxl
            keeps the half-built domain of an aborted create; txlibxl
            destroys it, and also the domain of a create that libxl
            finished in spite of the abort: once
            the ``settled`` Deferred of :class:`~txlibxl.operations.OperationCancelled` fires,
            no domain of the cancelled create is left.
        """
        self._check_usable()

        def start(op: _Operation) -> None:
            if on_console is not None and not callable(on_console):
                raise TypeError(f"on_console must be callable, not {on_console!r}")
            prepared = _config.with_uuid(config)
            text = _config.libxl_json("domain_config", prepared, self._ctx.json_round_trip)
            op.uuid = _config.config_uuid(prepared)
            op.on_console = on_console
            op.after = lambda rc, domid, answered: self._after_create(op, rc, domid, answered)
            op.progress_user = next(self._users)
            self._progress[op.progress_user] = op
            self._ctx.domain_create_new(text, op.op_id, op.progress_user)

        return self._operation("libxl_domain_create_new", NEW_DOMAIN, start, result=_domid)

    def _after_create(self, op: _Operation, rc: int, domid: Optional[int], answered: bool) -> Any:
        """
        Destroy what a create left behind: the domain of a failed create
        (libxl destroys it itself, unless it could not), of an aborted one
        (libxl keeps it), or of one that succeeded after its caller was
        told it was cancelled.
        """
        if (rc == 0 and not answered) or domid is None:
            return None
        if self._failure is not None or self._closed:
            self.log.error(
                "cannot check for (or destroy) domain {domid} of a failed create: the context is {state}",
                domid=domid, state="failed" if self._failure is not None else "closed",
            )
            return None
        if not self._is_domain(domid, op.uuid):
            return None
        if rc not in (0, errors.ERROR_ABORTED):
            self.log.warn(
                "libxl left domain {domid} behind after a failed create; destroying it", domid=domid
            )
        d = self._operation(
            "libxl_domain_destroy", domid, lambda op: self._ctx.domain_destroy(domid, op.op_id),
            internal=True,
        )
        return self._tx.add_callbacks(d, None, lambda f: self.log.failure(
            "destroying domain {domid} of a failed create", failure=f, domid=domid))

    def _is_domain(self, domid: int, uuid: Optional[str]) -> bool:
        try:
            return self._ctx.domain_info(domid).uuid == uuid
        except errors.TxlibxlError:
            return False

    def domain_config(self, domid: int) -> Any:
        """
        Domain C{domid}'s configuration as libxl keeps it
        (``libxl_retrieve_domain_configuration``): what it was created
        with, updated with what changed since (devices added and removed,
        memory target, vCPUs, name), in libxl's JSON shape.

        :returns: a Deferred that fires with the mapping.  libxl has it
            only for domains it created.  A retrieval changes nothing, so a
            cancel leaves nothing done; libxl usually completes it inside
            the call that starts it (then the Deferred has the result
            whatever the cancel), unless another toolstack holds the
            domain's lock.
        """
        return self._operation(
            "libxl_retrieve_domain_configuration",
            domid,
            lambda op: self._ctx.retrieve_domain_configuration(domid, op.op_id),
            result=json.loads,
        )

    def set_vcpus(self, domid: int, count: int) -> Any:
        """
        Have vCPUs 0 .. C{count}-1 of domain C{domid} online and the others
        offline (``libxl_set_vcpuonline``; C{count} at most the domain's
        maximum).

        :returns: a Deferred that fires with ``None`` once libxl has asked
            the guest (for PV and PVH guests: written to xenstore, where the
            guest picks it up).  For PV and PVH guests libxl does that
            inside the call that starts the operation, so a cancel changes
            nothing.  For HVM guests libxl asks the device model to add
            vCPUs first: a cancel leaves those it added, and the guest is
            not told.
        """
        return self._operation(
            "libxl_set_vcpuonline", domid, lambda op: self._ctx.set_vcpuonline(domid, count, op.op_id)
        )

    # Synchronous in libxl: their result, at once.

    def set_memory_target(
        self, domid: int, target_kb: int, relative: bool = False, enforce: bool = True
    ) -> None:
        """
        Set domain C{domid}'s memory (balloon) target to C{target_kb} KiB
        (``libxl_set_memory_target``); C{relative} adds C{target_kb} to the
        current target instead; C{enforce} also sets the domain's maximum
        memory to it, as ``xl mem-set`` does.  The guest balloons on its
        own time; :meth:`memory_target` reads the target back.

        :raises txlibxl.errors.LibxlError: libxl refused (with its message).
        """
        self._check_usable()
        check_domid(domid)
        self._ctx.set_memory_target(domid, target_kb, relative, enforce)

    def memory_target(self, domid: int) -> int:
        """
        Domain C{domid}'s memory target, in KiB (``libxl_get_memory_target``).
        """
        self._check_usable()
        check_domid(domid)
        return self._ctx.get_memory_target(domid)

    def rename(self, domid: int, name: str, old_name: Optional[str] = None) -> None:
        """
        Call domain C{domid} C{name} from now on (``libxl_domain_rename``),
        checking in the same xenstore transaction that it is still called
        C{old_name}, if given, and that no other domain is called C{name}.

        :raises txlibxl.errors.LibxlError: libxl refused (with its message).
        """
        self._check_usable()
        check_domid(domid)
        self._ctx.domain_rename(domid, name, old_name)

    def console_tty(self, domid: int, number: int = 0, kind: str = "pv") -> str:
        """
        The tty device of console C{number} of domain C{domid}
        (``libxl_console_get_tty``); C{kind} is ``"pv"``, ``"serial"``
        (an HVM guest's emulated serial port) or ``"vuart"``.
        """
        self._check_usable()
        check_domid(domid)
        return self._ctx.console_get_tty(domid, number, kind)

    def parse_disk_spec(self, spec: str) -> Dict[str, Any]:
        """
        xl's disk spec C{spec} (as in xl.cfg's ``disk=[...]``, e.g.
        ``"phy:/dev/vg/guest,xvda,w"`` or
        ``"format=raw,vdev=xvdb,access=ro,target=/srv/data.img"``) parsed
        by libxlutil into a ``libxl_device_disk`` mapping.

        :raises txlibxl.errors.InvalidConfiguration: libxlutil refused it
            (its report is the message).
        """
        self._check_usable()
        if not isinstance(spec, str):
            raise TypeError(f"a disk spec is a str, not {type(spec).__name__}")
        return json.loads(self._ctx.disk_spec_to_json(spec))


def _domid(value: Optional[int]) -> int:
    if value is None:
        raise errors.from_code(errors.ERROR_FAIL, "libxl_domain_create_new", "libxl reported no domid")
    return value
