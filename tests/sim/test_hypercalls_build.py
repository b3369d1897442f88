"""The hypercall protocol's extended requests and the domain-building ops,
on the server's side alone (an in-memory transport)."""
from __future__ import annotations

import errno
import struct
import uuid
from typing import Any, List, Tuple

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from txlibxl.sim import hypercalls
from txlibxl.sim.hypercalls import HypercallFactory
from txlibxl.sim.hypercalls_build import (
    CREATE,
    EXT_CREATEDOMAIN,
    EXT_GNTTAB_SEED,
    EXT_HVM_PARAM_SET,
    EXT_POPULATE,
    EXT_SETMAXMEM,
    OP_EVTCHN_ALLOC_UNBOUND,
    OP_MAX_VCPUS,
)
from txlibxl.sim.hypervisor import Hypervisor
from txlibxl.sim.store import Store

HANDLE = uuid.UUID("0f6a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d")


def extended(op: int, payload: bytes, version: int = hypercalls.EXTENDED_VERSION) -> bytes:
    return hypercalls.REQUEST.pack(op | hypercalls.EXTENDED, version, len(payload), 0) + payload


def create_args(domid: int = 0x7FF4, flags: int = 0, vcpus: int = 2, emulation: int = 0) -> bytes:
    return CREATE.pack(domid, flags, HANDLE.bytes, vcpus, emulation, 0, 0, 0)


class ExtendedRequestTests(TestCase):
    def setUp(self) -> None:
        self.hv = Hypervisor(Store())
        self.created: List[Any] = []
        self.factory = HypercallFactory(self.hv, on_created=self.created.append)
        self.addCleanup(self.factory.close)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.addCleanup(self.protocol.connectionLost, None)

    def send(self, *requests: bytes) -> List[Tuple[int, bytes]]:
        self.transport.clear()
        for request in requests:
            self.protocol.dataReceived(request)
        data, out = self.transport.value(), []
        while data:
            status, length = hypercalls.REPLY.unpack_from(data)
            out.append((status, data[8 : 8 + length]))
            data = data[8 + length :]
        return out

    def test_createdomain_answers_the_new_domid_and_tells_the_host(self) -> None:
        [(status, payload)] = self.send(extended(EXT_CREATEDOMAIN, create_args()))
        self.assertEqual((status, payload), (1, b""))
        domain = self.hv.get(1)
        self.assertEqual((domain.uuid, domain.vcpus, domain.type, domain.paused), (HANDLE, 2, "pv", True))
        self.assertEqual([d.domid for d in self.created], [1])

    def test_a_refused_create_tells_nobody(self) -> None:
        self.send(extended(EXT_CREATEDOMAIN, create_args(domid=5)))
        [(status, _)] = self.send(extended(EXT_CREATEDOMAIN, create_args(domid=5)))
        self.assertEqual(status, -errno.EEXIST)
        self.assertEqual(len(self.created), 1)

    def test_extended_and_classic_requests_mix_and_split_anywhere(self) -> None:
        data = (
            extended(EXT_CREATEDOMAIN, create_args())
            + hypercalls.REQUEST.pack(OP_MAX_VCPUS, 1, 2, 0)
            + extended(EXT_SETMAXMEM, struct.pack("<IQ", 1, 263168))
            + extended(EXT_POPULATE, struct.pack("<IQ", 1, 65536))
            + hypercalls.REQUEST.pack(OP_EVTCHN_ALLOC_UNBOUND, 1, 0, 0)
            + extended(EXT_GNTTAB_SEED, struct.pack("<IQQ", 1, 0x200, 0x201))
        )
        pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
        replies = self.send(*pieces)
        self.assertEqual([r[0] for r in replies], [1, 0, 0, 0, 1, 0])
        first_mfn = struct.unpack("<Q", replies[3][1])[0]
        domain = self.hv.get(1)
        self.assertEqual((domain.memory_kb, domain.mfn_base, domain.xenstore_gfn), (262144, first_mfn, 0x201))
        self.assertEqual(domain.event_channels, ((1, 0),))

    def test_hvm_params_are_set_on_hvm_containers_only(self) -> None:
        self.send(extended(EXT_CREATEDOMAIN, create_args(flags=3, emulation=1)))
        self.send(extended(EXT_CREATEDOMAIN, create_args()))
        replies = self.send(
            extended(EXT_HVM_PARAM_SET, struct.pack("<IIQ", 1, 1, 0xFEFFC)),
            extended(EXT_HVM_PARAM_SET, struct.pack("<IIQ", 2, 1, 0xFEFFC)),
        )
        self.assertEqual([r[0] for r in replies], [0, -errno.EINVAL])
        self.assertEqual(self.hv.hvm_param_get(1, 1), 0xFEFFC)

    def test_an_unknown_version_is_eproto_and_the_stream_goes_on(self) -> None:
        replies = self.send(
            extended(EXT_CREATEDOMAIN, create_args(), version=9),
            hypercalls.REQUEST.pack(hypercalls.OP_GETINFOLIST, 0, 4, 0),
        )
        self.assertEqual([r[0] for r in replies], [-errno.EPROTO, 1])

    def test_arguments_of_the_wrong_size_are_einval(self) -> None:
        [(status, _)] = self.send(extended(EXT_CREATEDOMAIN, create_args()[:-4]))
        self.assertEqual(status, -errno.EINVAL)
        self.assertEqual(self.created, [])

    def test_an_unknown_extended_op_is_enosys(self) -> None:
        [(status, _)] = self.send(extended(77, b"xyz"))
        self.assertEqual(status, -errno.ENOSYS)

    def test_getinfolist_counts_only_the_vcpus_that_are_up(self) -> None:
        self.send(extended(EXT_CREATEDOMAIN, create_args(vcpus=4)))
        self.hv.set_vcpu_online(1, 2, False)
        [(n, rows)] = self.send(hypercalls.REQUEST.pack(hypercalls.OP_GETINFOLIST, 1, 1, 0))
        row = hypercalls.ROW.unpack(rows)
        self.assertEqual((row[5], row[6]), (3, 3))  # nr_online_vcpus, max_vcpu_id

    def test_a_vcpu_the_guest_took_down_is_reported_offline(self) -> None:
        self.send(extended(EXT_CREATEDOMAIN, create_args(vcpus=2)))
        self.hv.unpause(1)
        self.hv.set_vcpu_online(1, 1, False)
        replies = self.send(hypercalls.REQUEST.pack(hypercalls.OP_VCPU_GETINFO, 1, 0, 0),
                            hypercalls.REQUEST.pack(hypercalls.OP_VCPU_GETINFO, 1, 1, 0))
        online_running = [hypercalls.VCPU.unpack(payload)[0:3:2] for _, payload in replies]
        self.assertEqual(online_running, [(1, 1), (0, 0)])
