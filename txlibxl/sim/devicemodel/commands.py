"""
The QMP commands the stand-in answers, with QEMU 7.2's arguments and
replies: :data:`COMMANDS`, name to handler.

These are the commands libxl 4.17 sends on its HVM paths, and their
neighbours:

* starting the device model (``libxl__spawn_local_dm``): ``query-status``
  (with ``dm_restrict``), then ``query-chardev``, ``query-vnc`` and
  ``change-vnc-password``;
* unpause and resume (``libxl__dm_resume``): ``cont``; suspend
  (``libxl__qmp_suspend_save``): ``stop``, ``add-fd``,
  ``xen-save-devices-state``;
* inserting a CD (``libxl_cdrom_insert``): ``query-version``, ``eject``,
  ``add-fd``, ``blockdev-change-medium``;
* the vCPUs (``libxl_retrieve_domain_configuration``,
  ``libxl_set_vcpuonline``): ``query-cpus-fast``,
  ``query-hotpluggable-cpus``, ``device_add`` of a CPU;
* and ``query-block``, ``blockdev-open-tray``/``-close-tray``/
  ``-remove-medium``, ``remove-fd``, ``query-fdsets``, ``query-name``,
  ``query-commands``, ``xen-set-global-dirty-log``, ``quit``.

Every other command is unknown (``CommandNotFound``), including those QEMU
has but the stand-in does not emulate (PCI passthrough, USB, the human
monitor); ``device_add`` of anything but a CPU is a ``GenericError``.  Arguments are checked as QEMU's QAPI visitor
checks them: a missing, unexpected or mistyped one is a ``GenericError``
naming it.  A handler gets the :class:`Context` of its session and the
``arguments`` object.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Optional, Tuple

from .model import DeviceModel, QmpError

__all__ = ["COMMANDS", "Context", "QEMU_VERSION", "SAVE_MAGIC", "check"]

#: What the stand-in says it is: QEMU 7.2.0, Debian 12's qemu-system-xen.
QEMU_VERSION = {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "txlibxl simulated device model"}

#: The device state file ``xen-save-devices-state`` writes: QEMU's
#: ``QEVM`` header (version 3), then the stand-in's state as one JSON line.
SAVE_MAGIC = b"QEVM\x00\x00\x00\x03"

_TYPES = {str: "string", bool: "boolean", int: "int", list: "array", dict: "object"}

#: The type of an HVM guest's vCPUs (``-machine xenfv``, QEMU's default
#: model for qemu-system-i386).
CPU_TYPE = "qemu32-i386-cpu"


class Context:
    """
    What a command may use: the machine, the session's passed file
    descriptor, and the stand-in's hooks.

    @param take_fd: the descriptor the client passed with this command
        (``SCM_RIGHTS``), now the caller's, or C{None}.
    @param owner: the session, for the descriptor sets it adds.
    @param quit: called once the reply to ``quit`` is on its way.
    @param host_path: where a compiled-in path is on this host.
    """

    def __init__(self, model: DeviceModel, take_fd: Callable[[], Optional[int]], owner: Any,
                 quit: Callable[[], Any] = lambda: None,
                 host_path: Callable[[str], str] = lambda path: path) -> None:
        self.model = model
        self.take_fd = take_fd
        self.owner = owner
        self.quit = quit
        self.host_path = host_path


def check(arguments: Dict[str, Any], required: Dict[str, type] = {},
          optional: Dict[str, type] = {}) -> Tuple[Any, ...]:
    """
    The arguments, required then optional in the order given (C{None} for
    a missing optional one).

    @raise QmpError: missing, unexpected or mistyped, as QEMU says it.
    """
    for key in arguments:
        if key not in required and key not in optional:
            raise QmpError("Parameter '%s' is unexpected" % key)
    values = []
    for spec, needed in ((required, True), (optional, False)):
        for key, kind in spec.items():
            if key not in arguments:
                if needed:
                    raise QmpError("Parameter '%s' is missing" % key)
                values.append(None)
                continue
            value = arguments[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise QmpError("Invalid parameter type for '%s', expected: %s" % (key, _TYPES[kind]))
            values.append(value)
    return tuple(values)


def query_status(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    status = ctx.model.status
    return {"status": status, "singlestep": False, "running": status == "running"}


def cont(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    ctx.model.cont()
    return {}


def stop(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    ctx.model.stop()
    return {}


def query_version(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    return json.loads(json.dumps(QEMU_VERSION))


def query_name(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    return {"name": ctx.model.name} if ctx.model.name is not None else {}


def query_commands(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return [{"name": name} for name in sorted(COMMANDS)]


def query_chardev(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return [dict(c) for c in ctx.model.chardevs]


def query_vnc(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return dict(ctx.model.vnc) if ctx.model.vnc is not None else {"enabled": False}


def change_vnc_password(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args, {"password": str})
    if ctx.model.vnc is None:
        raise QmpError("Could not set password")
    return {}


def _cpu_props(socket_id: int) -> Dict[str, int]:
    # libxl starts QEMU with -smp N,maxcpus=M: one core, one thread each.
    return {"core-id": 0, "thread-id": 0, "socket-id": socket_id}


def query_cpus_fast(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return [{"cpu-index": i, "qom-path": "/machine/unattached/device[%d]" % i, "thread-id": os.getpid(),
             "props": _cpu_props(i), "target": "i386"} for i in sorted(ctx.model.cpus)]


def query_hotpluggable_cpus(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    cpus = []
    for i in reversed(range(ctx.model.max_cpus)):
        entry: Dict[str, Any] = {"type": CPU_TYPE, "vcpus-count": 1, "props": _cpu_props(i)}
        if i in ctx.model.cpus:
            entry["qom-path"] = "/machine/unattached/device[%d]" % i
        cpus.append(entry)
    return cpus


def device_add(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    """Only a vCPU can be plugged in (``libxl_set_vcpuonline``)."""
    driver = args.get("driver")
    if not isinstance(driver, str):
        raise QmpError("Parameter 'driver' is missing" if driver is None else
                       "Invalid parameter type for 'driver', expected: string")
    if driver != CPU_TYPE:
        raise QmpError("the simulated device model does not emulate '%s' devices" % driver)
    _, _, socket_id, core, thread = check(
        args, {"driver": str, "id": str, "socket-id": int}, {"core-id": int, "thread-id": int})
    if core or thread:
        raise QmpError("Invalid CPU [socket: %d, core: %d, thread: %d]" % (socket_id, core, thread))
    ctx.model.add_cpu(socket_id)
    return {}


def query_block(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return ctx.model.query_block()


def _block(ctx: Context, args: Dict[str, Any], required: Dict[str, type] = {},
           optional: Dict[str, type] = {}) -> Tuple[Any, ...]:
    """The drive named by ``device`` or ``id``, and the other arguments."""
    values = check(args, required, dict({"device": str, "id": str}, **optional))
    n = len(required)
    return (ctx.model.find_block(values[n], values[n + 1]),) + values[:n] + values[n + 2:]


def eject(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    block, force = _block(ctx, args, optional={"force": bool})
    ctx.model.eject(block, bool(force))
    return {}


def open_tray(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    block, force = _block(ctx, args, optional={"force": bool})
    ctx.model.open_tray(block, bool(force))
    return {}


def close_tray(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    (block,) = _block(ctx, args)
    ctx.model.close_tray(block)
    return {}


def remove_medium(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    (block,) = _block(ctx, args)
    ctx.model.remove_medium(block)
    return {}


_READ_ONLY_MODES = {"retain": None, "read-only": True, "read-write": False}


def change_medium(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    block, filename, format, mode, force = _block(
        ctx, args, {"filename": str}, {"format": str, "read-only-mode": str, "force": bool})
    if mode is not None and mode not in _READ_ONLY_MODES:
        raise QmpError("Parameter 'read-only-mode' does not accept value '%s'" % mode)
    ctx.model.change_medium(block, filename, format, _READ_ONLY_MODES.get(mode or "retain"), bool(force))
    return {}


def add_fd(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    fdset_id, opaque = check(args, optional={"fdset-id": int, "opaque": str})
    fd = ctx.take_fd()
    if fd is None:
        raise QmpError("No file descriptor supplied via SCM_RIGHTS")
    return ctx.model.add_fd(fd, ctx.owner, fdset_id, opaque)


def remove_fd(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    fdset_id, fd = check(args, {"fdset-id": int}, {"fd": int})
    ctx.model.remove_fd(fdset_id, fd)
    return {}


def query_fdsets(ctx: Context, args: Dict[str, Any]) -> Any:
    check(args)
    return ctx.model.query_fdsets()


def save_devices_state(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    """Write the machine's state (its drives and media) to C{filename}."""
    filename, _live = check(args, {"filename": str}, {"live": bool})
    state = {"domid": ctx.model.domid, "blocks": [
        {"device": b.device, "medium": b.medium, "format": b.format, "tray_open": b.tray_open}
        for b in ctx.model.blocks.values()]}
    data = SAVE_MAGIC + json.dumps(state).encode() + b"\n"
    try:
        if filename.startswith("/dev/fdset/"):
            fd = os.dup(ctx.model.fdset_fd(filename))
        else:
            fd = os.open(ctx.host_path(filename), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise QmpError("failed to save the device state to '%s': %s" % (filename, e.strerror)) from None
    return {}


def set_global_dirty_log(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    """Log-dirty mode for a live save: nothing to track without memory."""
    check(args, {"enable": bool})
    return {}


def quit(ctx: Context, args: Dict[str, Any]) -> Dict[str, Any]:
    check(args)
    ctx.quit()
    return {}


#: Command name -> handler(context, arguments) -> the ``return`` value.
COMMANDS: Dict[str, Callable[[Context, Dict[str, Any]], Any]] = {
    "query-status": query_status,
    "cont": cont,
    "stop": stop,
    "query-version": query_version,
    "query-name": query_name,
    "query-commands": query_commands,
    "query-chardev": query_chardev,
    "query-vnc": query_vnc,
    "change-vnc-password": change_vnc_password,
    "query-cpus-fast": query_cpus_fast,
    "query-hotpluggable-cpus": query_hotpluggable_cpus,
    "device_add": device_add,
    "query-block": query_block,
    "eject": eject,
    "blockdev-open-tray": open_tray,
    "blockdev-close-tray": close_tray,
    "blockdev-remove-medium": remove_medium,
    "blockdev-change-medium": change_medium,
    "add-fd": add_fd,
    "remove-fd": remove_fd,
    "query-fdsets": query_fdsets,
    "xen-save-devices-state": save_devices_state,
    "xen-set-global-dirty-log": set_global_dirty_log,
    "quit": quit,
}
