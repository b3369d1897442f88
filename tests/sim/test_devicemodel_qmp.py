"""
The device model stand-in's QMP conversation on its own
(:class:`txlibxl.sim.devicemodel.qmp.QmpSession`, no I/O): the greeting
and the negotiation, framing, the error of each kind of bad input, every
command libxl 4.17 sends with the replies it reads, events, passed file
descriptors, ``quit`` and the silent fault.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from twisted.trial.unittest import TestCase

from txlibxl.sim.devicemodel.cmdline import parse
from txlibxl.sim.devicemodel.commands import SAVE_MAGIC
from txlibxl.sim.devicemodel.model import DeviceModel
from txlibxl.sim.devicemodel.qmp import MAX_PENDING, QmpSession

#: The command line libxl 4.17 gives the device model of an HVM guest
#: with a disk (hda), a CD-ROM (hdc) and a nic (recorded from a run).
def libxl_argv(cd: str = "/srv/cd.iso", disk: str = "/srv/disk.img", domid: int = 7) -> List[str]:
    return [
        "-xen-domid", str(domid), "-no-shutdown",
        "-chardev", "socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-%d,server=on,wait=off" % domid,
        "-mon", "chardev=libxl-cmd,mode=control",
        "-chardev", "socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-%d,server=on,wait=off" % domid,
        "-mon", "chardev=libxenstat-cmd,mode=control",
        "-nodefaults", "-no-user-config", "-name", "hvm1", "-vnc", "127.0.0.1:0,to=99", "-display", "none",
        "-device", "cirrus-vga,vgamem_mb=8", "-boot", "order=cda", "-smp", "2,maxcpus=2",
        "-device", "rtl8139,id=nic0,netdev=net0,mac=00:16:3e:5e:00:01",
        "-netdev", "type=tap,id=net0,ifname=vif%d.0-emu,br=xenbr0,script=no,downscript=no" % domid,
        "-machine", "xenfv,suppress-vmdesc=on", "-m", "248",
        "-drive", "file=%s,if=ide,index=0,media=disk,format=raw,cache=writeback" % disk,
        "-drive", "if=none,readonly=on,id=ide-5632,file=%s,format=raw" % cd,
        "-device", "ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0",
    ]


class Conversation:
    """A session and what it sent, as JSON messages."""

    def __init__(self, model: Optional[DeviceModel] = None, negotiate: bool = True, **kw: Any) -> None:
        self.model = model or DeviceModel.from_command_line(parse(libxl_argv()))
        self.raw: List[bytes] = []
        self.closed = False
        self.quits = 0
        self.session = QmpSession(self.model, self.raw.append, self._close, clock=lambda: 1000.25,
                                  quit=self._quit, **kw)
        self.session.start()
        if negotiate:
            self.call("qmp_capabilities")

    def _close(self) -> None:
        self.closed = True

    def _quit(self) -> None:
        self.quits += 1

    def messages(self) -> List[Dict[str, Any]]:
        data = b"".join(self.raw)
        assert data == b"" or data.endswith(b"\r\n"), data
        return [json.loads(m) for m in data.split(b"\r\n")[:-1]]

    def send(self, data: Any) -> None:
        self.session.data_received(data if isinstance(data, bytes) else json.dumps(data).encode() + b"\r\n")

    def reply(self, name: str, arguments: Optional[Dict[str, Any]] = None, ident: Any = 1) -> Dict[str, Any]:
        message: Dict[str, Any] = {"execute": name, "id": ident}
        if arguments is not None:
            message["arguments"] = arguments
        before = len(self.messages())
        self.send(message)
        replies = [m for m in self.messages()[before:] if "event" not in m]
        assert len(replies) == 1, replies
        return replies[0]

    def call(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> Any:
        reply = self.reply(name, arguments)
        assert "return" in reply, reply
        return reply["return"]

    def error(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
        reply = self.reply(name, arguments)
        assert "error" in reply, reply
        return reply["error"]

    def events(self) -> List[Dict[str, Any]]:
        return [m for m in self.messages() if "event" in m]


class NegotiationTests(TestCase):
    def test_the_greeting_names_qemu_7_2_and_no_capabilities(self) -> None:
        c = Conversation(negotiate=False)
        [greeting] = c.messages()
        self.assertEqual(greeting["QMP"]["version"]["qemu"], {"major": 7, "minor": 2, "micro": 0})
        self.assertEqual(greeting["QMP"]["capabilities"], [])

    def test_commands_before_the_negotiation_are_not_found(self) -> None:
        c = Conversation(negotiate=False)
        reply = c.reply("query-status", ident=9)
        self.assertEqual(reply["error"]["class"], "CommandNotFound")
        self.assertIn("qmp_capabilities", reply["error"]["desc"])
        self.assertEqual(reply["id"], 9)

    def test_the_negotiation_happens_once(self) -> None:
        c = Conversation(negotiate=False)
        self.assertEqual(c.call("qmp_capabilities"), {})
        self.assertEqual(c.error("qmp_capabilities")["class"], "CommandNotFound")

    def test_a_capability_it_does_not_have_is_refused(self) -> None:
        c = Conversation(negotiate=False)
        self.assertEqual(c.error("qmp_capabilities", {"enable": ["oob"]})["class"], "GenericError")
        self.assertEqual(c.call("qmp_capabilities", {"enable": []}), {})


class FramingTests(TestCase):
    def test_the_id_of_any_json_type_is_echoed_and_none_without_one(self) -> None:
        c = Conversation()
        for ident in (1, "x", [1, {"a": None}], None):
            self.assertEqual(c.reply("query-status", ident=ident)["id"], ident)
        c.send({"execute": "query-status"})
        self.assertNotIn("id", c.messages()[-1])

    def test_commands_may_come_in_pieces_or_several_in_one_read(self) -> None:
        c = Conversation()
        data = b'{"execute": "query-name", "id": 1}\r\n{"execute": "query-version", "id": 2}'
        for byte in data:
            c.session.data_received(bytes([byte]))
        c.send(b'{"execute": "stop", "id": 3}{"execute": "cont", "id": 4}')
        replies = [m for m in c.messages() if "id" in m]
        # The first is the negotiation's.
        self.assertEqual([m["id"] for m in replies], [1, 1, 2, 3, 4])

    def test_bad_json_is_a_generic_error_and_the_session_goes_on(self) -> None:
        c = Conversation()
        c.send(b'{"execute": nonsense}\r\n')
        error = c.messages()[-1]
        self.assertEqual(error["error"]["class"], "GenericError")
        self.assertIn("JSON parse error", error["error"]["desc"])
        self.assertNotIn("id", error)
        self.assertEqual(c.call("query-status")["status"], "running")

    def test_input_that_is_not_a_command_is_refused_naming_why(self) -> None:
        c = Conversation()
        cases = [
            ([1, 2], "must be a JSON object"),
            (7, "must be a JSON object"),
            ({"arguments": {}}, "lacks member 'execute'"),
            ({"execute": 3}, "'execute' must be a string"),
            ({"execute": "cont", "arguments": []}, "'arguments' must be an object"),
            ({"execute": "cont", "bogus": 1}, "'bogus' is unexpected"),
        ]
        for message, why in cases:
            c.send(message)
            error = c.messages()[-1]["error"]
            self.assertEqual(error["class"], "GenericError", message)
            self.assertIn(why, error["desc"], message)

    def test_an_unknown_command_is_command_not_found(self) -> None:
        c = Conversation()
        for name in ("no-such-command", "device_del", "human-monitor-command"):
            error = c.error(name)
            self.assertEqual(error, {"class": "CommandNotFound", "desc": "The command %s has not been found" % name})

    def test_endless_unfinished_input_ends_the_session(self) -> None:
        c = Conversation()
        c.send(b'{"execute": "' + b"x" * (MAX_PENDING + 1))
        self.assertTrue(c.closed)
        self.assertEqual(c.messages()[-1]["error"]["class"], "GenericError")


class ArgumentTests(TestCase):
    def test_missing_unexpected_and_mistyped_arguments_are_named(self) -> None:
        c = Conversation()
        self.assertEqual(c.error("change-vnc-password")["desc"], "Parameter 'password' is missing")
        self.assertEqual(c.error("cont", {"now": True})["desc"], "Parameter 'now' is unexpected")
        self.assertEqual(c.error("eject", {"id": 5632})["desc"], "Invalid parameter type for 'id', expected: string")
        self.assertEqual(c.error("eject", {"id": "ide-5632", "force": "yes"})["desc"],
                         "Invalid parameter type for 'force', expected: boolean")

    def test_a_drive_is_named_by_device_or_by_id_not_both(self) -> None:
        c = Conversation()
        self.assertIn("exactly one", c.error("eject")["desc"])
        self.assertIn("exactly one", c.error("eject", {"id": "ide-5632", "device": "ide-5632"})["desc"])
        self.assertEqual(c.error("eject", {"id": "ide-9"})["class"], "DeviceNotFound")
        self.assertEqual(c.call("eject", {"device": "ide-5632"}), {})


class RunStateTests(TestCase):
    def test_cont_runs_a_machine_started_paused_and_stop_pauses_it(self) -> None:
        model = DeviceModel.from_command_line(parse(["-xen-domid", "3", "-S"]))
        c = Conversation(model)
        self.assertEqual(c.call("query-status"), {"status": "prelaunch", "singlestep": False, "running": False})
        self.assertEqual(c.call("cont"), {})
        self.assertEqual(c.call("query-status")["status"], "running")
        self.assertEqual(c.call("cont"), {})  # already running: nothing to do
        self.assertEqual(c.call("stop"), {})
        self.assertEqual(c.call("query-status"), {"status": "paused", "singlestep": False, "running": False})
        self.assertEqual([e["event"] for e in c.events()], ["RESUME", "STOP"])
        self.assertEqual(c.events()[0]["timestamp"], {"seconds": 1000, "microseconds": 250000})

    def test_events_go_only_to_clients_that_negotiated(self) -> None:
        c = Conversation(negotiate=False)
        c.model.stop()
        self.assertEqual(c.events(), [])

    def test_quit_replies_then_ends_the_session(self) -> None:
        c = Conversation()
        reply = c.reply("quit")
        self.assertEqual(reply, {"return": {}, "id": 1})
        self.assertEqual(c.messages()[-1]["event"], "SHUTDOWN")
        self.assertEqual((c.closed, c.quits), (True, 0))
        # Once the reply is out and the connection gone, QEMU exits.
        c.session.connection_lost()
        self.assertEqual(c.quits, 1)


class QueryTests(TestCase):
    def test_version_and_name(self) -> None:
        c = Conversation()
        self.assertEqual(c.call("query-version")["qemu"], {"major": 7, "minor": 2, "micro": 0})
        self.assertEqual(c.call("query-name"), {"name": "hvm1"})
        self.assertIn({"name": "blockdev-change-medium"}, c.call("query-commands"))

    def test_chardevs_and_vnc_are_those_of_the_command_line(self) -> None:
        c = Conversation()
        labels = {d["label"]: d["filename"] for d in c.call("query-chardev")}
        self.assertEqual(labels["libxl-cmd"], "unix:/var/run/xen/qmp-libxl-7,server=on")
        vnc = c.call("query-vnc")
        self.assertEqual((vnc["enabled"], vnc["host"], vnc["service"]), (True, "127.0.0.1", "5900"))
        self.assertEqual(c.call("change-vnc-password", {"password": "s3cret"}), {})
        bare = Conversation(DeviceModel.from_command_line(parse(["-xen-domid", "3", "-serial", "pty"])))
        self.assertEqual(bare.call("query-vnc"), {"enabled": False})
        self.assertEqual(bare.call("query-chardev")[0]["label"], "serial0")
        self.assertTrue(bare.call("query-chardev")[0]["filename"].startswith("pty:"))

    def test_query_block_shows_each_drive_with_its_medium_and_tray(self) -> None:
        c = Conversation()
        disk, cd = c.call("query-block")
        self.assertEqual((disk["device"], disk["removable"]), ("ide0-hd0", False))
        self.assertNotIn("tray_open", disk)
        self.assertEqual(disk["inserted"]["file"], "/srv/disk.img")
        self.assertEqual((cd["device"], cd["qdev"], cd["removable"], cd["tray_open"]), ("ide-5632", "ide-5632", True, False))
        self.assertEqual((cd["inserted"]["file"], cd["inserted"]["ro"], cd["inserted"]["drv"]), ("/srv/cd.iso", True, "raw"))


class CpuTests(TestCase):
    def conversation(self) -> Conversation:
        return Conversation(DeviceModel.from_command_line(parse(["-xen-domid", "3", "-smp", "2,maxcpus=4"])))

    def test_the_present_vcpus_and_the_hotpluggable_ones(self) -> None:
        c = self.conversation()
        self.assertEqual([cpu["cpu-index"] for cpu in c.call("query-cpus-fast")], [0, 1])
        slots = c.call("query-hotpluggable-cpus")
        self.assertEqual([(s["props"]["socket-id"], "qom-path" in s) for s in slots],
                         [(3, False), (2, False), (1, True), (0, True)])
        self.assertEqual({s["type"] for s in slots}, {"qemu32-i386-cpu"})

    def test_device_add_plugs_a_vcpu_as_libxl_asks(self) -> None:
        c = self.conversation()
        args = {"id": "cpu-2", "driver": "qemu32-i386-cpu", "socket-id": 2, "core-id": 0, "thread-id": 0}
        self.assertEqual(c.call("device_add", args), {})
        self.assertEqual([cpu["cpu-index"] for cpu in c.call("query-cpus-fast")], [0, 1, 2])
        self.assertIn("exists", c.error("device_add", args)["desc"])
        self.assertIn("Invalid CPU", c.error("device_add", dict(args, id="cpu-9", **{"socket-id": 9}))["desc"])

    def test_device_add_of_anything_else_is_not_emulated(self) -> None:
        c = self.conversation()
        error = c.error("device_add", {"driver": "xen-pci-passthrough", "id": "pci-pt-03_00.0"})
        self.assertEqual(error["class"], "GenericError")
        self.assertIn("does not emulate", error["desc"])
        self.assertEqual(c.error("device_add", {"id": "x"})["desc"], "Parameter 'driver' is missing")

