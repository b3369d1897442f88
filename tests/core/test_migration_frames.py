"""
The migration protocol's framing (:mod:`txlibxl.migration.protocol`):
however the connection cuts the octets, the control frames arrive whole
and in order, a data frame's payload arrives whole across its pieces,
and a malformed frame breaks the protocol once.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from twisted.trial.unittest import TestCase

from txlibxl.migration import protocol as p
from txlibxl.migration.errors import MigrationProtocolError


class Recorder(p.FrameProtocol):
    def __init__(self) -> None:
        self.frames: List[Tuple[bytes, Any]] = []
        self.broken: List[Exception] = []

    def frameReceived(self, kind: bytes, payload: Any) -> None:
        if kind == p.DATA and self.frames and self.frames[-1][0] == p.DATA:
            self.frames[-1] = (p.DATA, self.frames[-1][1] + payload)  # the pieces of one frame, or of the next
        else:
            self.frames.append((kind, payload))

    def protocolBroken(self, error: Exception) -> None:
        self.broken.append(error)


STREAM = (p.control(p.HELLO, protocol=p.PROTOCOL, version=1, config={"c_info": {}})
          + p.header(p.DATA, 300000) + bytes(range(256)) * 1171 + b"\x01" * 224
          + p.frame(p.DATA) + p.frame(p.END) + p.control(p.READY, domid=3))
EXPECTED = [(p.HELLO, {"protocol": p.PROTOCOL, "version": 1, "config": {"c_info": {}}}),
            (p.DATA, bytes(range(256)) * 1171 + b"\x01" * 224), (p.END, {}), (p.READY, {"domid": 3})]


class FramingTests(TestCase):
    def feed(self, size: int) -> Recorder:
        r = Recorder()
        for start in range(0, len(STREAM), size):
            r.dataReceived(STREAM[start:start + size])
        return r

    def test_frames_arrive_the_same_however_the_octets_are_cut(self) -> None:
        for size in (len(STREAM), 65536, 4099, 7, 1):
            r = self.feed(size)
            self.assertEqual((r.frames, r.broken), (EXPECTED, []), size)

    def test_a_data_frame_longer_than_max_data_breaks_the_protocol_once(self) -> None:
        r = Recorder()
        r.dataReceived(p.header(p.DATA, p.MAX_DATA + 1) + b"x" * 10)
        r.dataReceived(p.frame(p.END))
        self.assertEqual(len(r.broken), 1)
        self.assertIsInstance(r.broken[0], MigrationProtocolError)
        self.assertEqual(r.frames, [])

    def test_a_control_frame_that_is_not_a_json_object_breaks_it(self) -> None:
        r = Recorder()
        r.dataReceived(p.frame(p.READY, b"[1, 2]") + p.frame(p.END))
        self.assertEqual((len(r.broken), r.frames), (1, []))
