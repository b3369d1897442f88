"""
The binding's side of building domains, against the real libxenlight on a
simulated host: configurations cross as libxl's JSON, libxl's own words
reach the errors, and an operation's C arguments are kept until it is
finished, then disposed once, on every path.
"""
from __future__ import annotations

import ctypes
import json
import threading
from typing import Any, Callable, List

from twisted.internet import defer

from txlibxl import errors
from txlibxl._libxl import native
from txlibxl._libxl.capture import LibxlSays
from txlibxl._libxl.ctx_operations import Finished
from txlibxl._libxl.kept import KeptArguments

from .test_binding_on_sim import BindingTestCase

PV = {
    "c_info": {"type": "pv", "name": "g1"},
    "b_info": {"max_vcpus": 2, "max_memkb": 262144, "target_memkb": 262144,
               "type.pv": {"kernel": "/boot/vmlinuz"}, "claim_mode": "True"},
    "disks": [{"pdev_path": "/dev/vg/g1", "vdev": "xvda", "format": "raw", "readwrite": 1}],
    "nics": [{"mac": "00:16:3e:00:00:01"}],
}
# A create libxl refuses before it makes any domain, whatever the host can
# build: the host has no IOMMU.
REFUSED = dict(PV, c_info=dict(PV["c_info"], passthrough="enabled"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_in_use() -> int:
    """Bytes the C allocator has handed out and not had back."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


class JSONTests(BindingTestCase):
    def round_trip(self, config: Any) -> Any:
        return json.loads(self.ctx.json_round_trip("domain_config", json.dumps(config)))

    def test_libxl_reads_and_writes_back_its_own_json(self) -> None:
        kept = self.round_trip(PV)
        self.assertEqual(kept["c_info"], PV["c_info"])
        self.assertEqual(kept["b_info"]["type.pv"], PV["b_info"]["type.pv"])
        self.assertEqual(kept["b_info"]["claim_mode"], "True")
        self.assertEqual((kept["disks"], kept["nics"]), (PV["disks"], PV["nics"]))

    def test_libxl_itself_drops_unknown_keys_and_wrong_types_silently(self) -> None:
        # Why txlibxl.config checks what libxl kept: libxl says nothing.
        given = json.loads(json.dumps(PV))
        given["b_info"].update(max_vcpu=3, max_memkb="big")
        kept = self.round_trip(given)
        self.assertNotIn("max_vcpu", kept["b_info"])
        self.assertNotIn("max_memkb", kept["b_info"])

    def test_a_value_libxl_refuses_raises_with_libxls_code_and_message(self) -> None:
        given = dict(PV, c_info={"type": "bogus", "name": "g1"})
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            self.round_trip(given)
        self.assertEqual(caught.exception.code, errors.ERROR_FAIL)
        self.assertIn("unable to convert libxl__json_object to libxl_domain_config", caught.exception.message)

    def test_devices_cross_as_json_too(self) -> None:
        disk = json.loads(self.ctx.json_round_trip("device_disk", json.dumps(PV["disks"][0])))
        self.assertEqual(disk, PV["disks"][0])
        nic = json.loads(self.ctx.json_round_trip("device_nic", '{"bridge": "xenbr0"}'))
        self.assertEqual(nic, {"bridge": "xenbr0"})

    def test_a_disk_spec_is_parsed_by_libxlutil(self) -> None:
        disk = json.loads(self.ctx.disk_spec_to_json("phy:/dev/vg/x,xvda,w"))
        self.assertEqual(disk, {"pdev_path": "/dev/vg/x", "vdev": "xvda", "format": "raw", "readwrite": 1})

    def test_a_bad_disk_spec_raises_with_libxlutils_report(self) -> None:
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            self.ctx.disk_spec_to_json("foo:/dev/vg/x,xvda,w")
        self.assertEqual(caught.exception.code, errors.ERROR_INVAL)
        self.assertIn("unknown deprecated disk prefix", caught.exception.message)


class CaptureTests(BindingTestCase):
    def refuse(self) -> None:
        self.ctx.json_round_trip("domain_config", '{"c_info": {"type": "bogus"}}')

    def test_error_messages_are_captured_whatever_the_log_level(self) -> None:
        self.ctx.set_log_level(9)  # critical only
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            self.refuse()
        self.assertIn("libxl__object_from_json", caught.exception.message)

    def test_a_round_trip_libxl_refuses_says_why_in_the_error_and_not_in_the_log(self) -> None:
        # txlibxl.config's probes are refused by design: no ERROR line each.
        self.ctx.set_log_level(1)  # everything (XTL_DEBUG)
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            self.refuse()
        self.assertIn("libxl__object_from_json", caught.exception.message)
        self.assertEqual([text for _, text in self.messages if "libxl__object_from_json" in text], [])

    def test_a_refusal_outside_a_check_is_logged_as_well(self) -> None:
        self.ctx.set_log_level(1)
        kept = KeptArguments()
        self.addCleanup(kept.dispose)
        with self.assertRaises(errors.InvalidConfiguration):
            self.ctx._from_json("domain_config", '{"c_info": {"type": "bogus"}}', kept)
        self.assertTrue(any("libxl__object_from_json" in text for _, text in self.messages), self.messages)

    def test_a_quiet_block_keeps_its_words_for_an_enclosing_capture(self) -> None:
        with LibxlSays() as outer:
            self.assertRaises(errors.InvalidConfiguration, self.refuse)
        self.assertTrue(any("libxl__object_from_json" in line for line in outer.lines), outer.lines)

    def test_a_capture_sees_only_its_own_threads_messages(self) -> None:
        failures: List[BaseException] = []

        def elsewhere() -> None:
            try:
                self.refuse()
            except errors.InvalidConfiguration as e:
                failures.append(e)

        with LibxlSays() as said:
            worker = threading.Thread(target=elsewhere)
            worker.start()
            worker.join()
        self.assertEqual(len(failures), 1)
        self.assertEqual(said.lines, ())


    def test_a_failure_reported_while_libxl_delivers_reports_carries_what_it_said_there(self) -> None:
        # libxl fails an operation from inside an occurred_fd/_timeout call
        # (a device that never connects...); played here with a refusal
        # that logs, then the completion libxl would make.
        self.ctx.set_ao_completion(lambda op_id, rc: None)
        self.ctx._ops.add(7)  # in flight

        def libxl_delivering() -> None:
            self.assertRaises(errors.InvalidConfiguration, self.refuse)
            # the completion as libxl makes it: through the ao_how's callback
            ffi, lib = native.load()
            lib.txl_ao_done(self.ctx._ctx, errors.ERROR_FAIL, ffi.cast("void *", 7))

        self.ctx._deliver_reports(libxl_delivering)
        said = self.ctx.finish_operation(7).said
        self.assertTrue(any("libxl__object_from_json" in line for line in said), said)

    def test_nothing_is_kept_for_a_delivery_in_which_nothing_failed(self) -> None:
        self.ctx._deliver_reports(lambda: self.assertRaises(errors.InvalidConfiguration, self.refuse))
        self.assertEqual(self.ctx.operations_kept, frozenset())


class KeptArgumentsTests(BindingTestCase):
    def complete(self, start: Callable[[int], None], op_id: int) -> int:
        start(op_id)
        self.pump(lambda: op_id not in self.ctx.operations_in_flight)
        return dict(self.completions)[op_id]

    def test_a_refused_create_is_finished_with_no_domid_and_libxls_words(self) -> None:
        rc = self.complete(lambda op_id: self.ctx.domain_create_new(json.dumps(REFUSED), op_id, 99), 1)
        self.assertEqual(rc, errors.ERROR_INVAL)
        self.assertIn(1, self.ctx.operations_kept)
        finished = self.ctx.finish_operation(1)
        self.assertIsNone(finished.result)
        self.assertTrue(any("passthrough not supported" in line for line in finished.said), finished.said)
        self.assertEqual(self.ctx.operations_kept, frozenset())

    def test_an_operations_arguments_are_disposed_once(self) -> None:
        self.complete(lambda op_id: self.ctx.retrieve_domain_configuration(0, op_id), 2)
        kept = self.ctx._kept.get(2)
        self.ctx.finish_operation(2)
        self.assertEqual(self.ctx.finish_operation(2), Finished(None, ()))
        if kept is not None:
            self.assertTrue(kept.disposed)

    @defer.inlineCallbacks
    def test_arguments_are_not_read_while_libxl_points_into_them(self) -> Any:
        dom = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=dom["domid"])
        self.ctx.domain_shutdown(dom["domid"], 3)
        self.assertRaises(errors.ContextStateError, self.ctx.finish_operation, 3)

    def test_free_disposes_what_was_never_finished(self) -> None:
        self.complete(lambda op_id: self.ctx.domain_create_new(json.dumps(REFUSED), op_id, 99), 4)
        kept = self.ctx._kept[4]
        self.ctx.free()
        self.assertTrue(kept.disposed)
        self.assertRaises(errors.ContextClosed, self.ctx.finish_operation, 4)

    def test_a_refused_start_keeps_nothing(self) -> None:
        self.assertRaises(
            errors.InvalidConfiguration, self.ctx.domain_create_new, '{"c_info": {"type": "x"}}', 5, 99
        )
        self.assertRaises(errors.GeneralFailure, self.ctx.device_disk_remove, 4242, "xvda", 6)
        self.assertEqual((self.ctx.operations_kept, self.ctx.operations_in_flight), (frozenset(), frozenset()))

    def test_nothing_is_leaked_on_any_path(self) -> None:
        good = json.dumps(PV)
        bad = json.dumps(dict(PV, disks=[{"vdev": "xvda", "format": "bogus"}]))
        refused = json.dumps(REFUSED)

        def paths(op_id: int) -> None:
            self.ctx.json_round_trip("domain_config", good)
            self.assertRaises(errors.InvalidConfiguration, self.ctx.json_round_trip, "domain_config", bad)
            self.assertRaises(errors.InvalidConfiguration, self.ctx.disk_spec_to_json, "foo:x,xvda,w")
            self.assertRaises(errors.InvalidConfiguration, self.ctx.domain_create_new, bad, op_id, 99)
            self.assertNotEqual(self.complete(lambda i: self.ctx.domain_create_new(refused, i, 99), op_id), 0)
            self.ctx.finish_operation(op_id)

        for op_id in range(10, 60):  # warm up libxl's and Python's caches
            paths(op_id)
        before = malloc_in_use()
        for op_id in range(100, 400):
            paths(op_id)
        self.assertLess(malloc_in_use() - before, 64 * 1024)
