"""
The simulated host's save stream (:mod:`txlibxl.sim.savestream`): what the
writer writes the reader takes back, and the reader refuses every stream
that is truncated, corrupt or not a simulator's, as the shim's restore
does (the tests in ``test_libxl_save`` check the C side against these).
"""
from __future__ import annotations

import io
import json
import os
import struct
import uuid

from twisted.trial.unittest import TestCase

from txlibxl.sim import __main__ as sim_main

from txlibxl.sim.savestream import (
    PAGE_SIZE,
    REC_END,
    REC_PAGE_DATA,
    REC_SIM_GUEST,
    SimDomain,
    SimGuest,
    StreamError,
    decode_marker_page,
    encode_marker_page,
    libxl_stream,
    pattern_page,
    read_stream,
    split_libxl_stream,
    write_stream,
)
from txlibxl.sim.savestream import format as fmt
from txlibxl.sim.savestream.writer import record

UUID = uuid.UUID("2d1e4f3a-5b6c-4d7e-8f90-a1b2c3d4e5f6")


def domain(pages: int = 64, type: str = "pv") -> SimDomain:
    return SimDomain(type, UUID, 2, 262144, pages, 0x1234_5678_9ABC, 2, 3)


GUEST = SimGuest(262144, frozenset({0, 1}))


def stream(pages: int = 64, marker: bytes = b"m1", **kw) -> bytes:
    out = io.BytesIO()
    write_stream(out, domain(pages, kw.pop("type", "pv")), GUEST, marker, **kw)
    return out.getvalue()


def read(data: bytes, **kw):
    return read_stream(io.BytesIO(data), **kw)


def records(data: bytes):
    """(offset, type, body length) of each record."""
    pos, found = fmt.IHDR.size + fmt.DHDR.size, []
    while pos < len(data):
        rtype, length = fmt.RECORD.unpack_from(data, pos)
        found.append((pos, rtype, length))
        pos += fmt.RECORD.size + fmt.padded(length)
    return found


class RoundTripTests(TestCase):
    def test_what_the_writer_writes_the_reader_reads_back(self) -> None:
        data = stream(64, b"hello")
        summary = read(data)
        self.assertEqual((summary.domain, summary.guest, summary.marker), (domain(64), GUEST, b"hello"))
        self.assertEqual((summary.header_type, summary.page_records, summary.pages_sent), ("pv", 1, 64))
        self.assertEqual(summary.length, len(data))

    def test_pages_come_in_records_of_at_most_1024(self) -> None:
        summary = read(stream(2500))
        self.assertEqual((summary.page_records, summary.pages_sent), (3, 2500))

    def test_a_page_sent_again_in_a_later_round_counts_once_for_the_image(self) -> None:
        summary = read(stream(64, rounds=[range(64), range(0, 64, 4), [0]]))
        self.assertEqual(summary.pages_sent, 64 + 16 + 1)

    def test_the_reader_stops_at_the_end_record(self) -> None:
        data = stream(8)
        f = io.BytesIO(data + b"libxl's records")
        read_stream(f)
        self.assertEqual(f.read(), b"libxl's records")

    def test_an_hvm_container_has_an_hvm_domain_header(self) -> None:
        self.assertEqual(read(stream(8, type="pvh")).header_type, "hvm")

    def test_the_stream_is_a_multiple_of_8_octets_and_mostly_pages(self) -> None:
        data = stream(256)
        self.assertEqual(len(data) % 8, 0)
        self.assertGreater(len(data), 256 * PAGE_SIZE)
        self.assertLess(len(data), 256 * (PAGE_SIZE + 8) + 512)

    def test_an_unknown_optional_record_is_skipped(self) -> None:
        data = stream(8)
        pos = records(data)[-1][0]
        extra = record(0x80001234, b"future")
        self.assertEqual(read(data[:pos] + extra + data[pos:]).marker, b"m1")


class RefusedTests(TestCase):
    def assertRefused(self, data: bytes, message: str = "", **kw) -> None:
        with self.assertRaises(StreamError) as caught:
            read(data, **kw)
        self.assertIn(message, str(caught.exception))

    def test_a_stream_cut_anywhere_is_refused(self) -> None:
        data = stream(16)
        cuts = {0, 10, 24, 30, 40} | {p for p, _, _ in records(data)} | {p + 12 for p, _, _ in records(data)}
        for cut in sorted(c for c in cuts if c < len(data)):
            self.assertRefused(data[:cut], "truncated")

    def test_a_flipped_bit_in_a_pattern_page_is_refused(self) -> None:
        data = bytearray(stream(16))
        data[-PAGE_SIZE * 3] ^= 0x10
        self.assertRefused(bytes(data), "does not hold its pattern")

    def test_a_page_under_another_pfn_is_refused(self) -> None:
        data = bytearray(stream(16))
        pos = [p for p, t, _ in records(bytes(data)) if t == REC_PAGE_DATA][0]
        first_pfn = pos + fmt.RECORD.size + fmt.PAGE_DATA_HEADER.size
        struct.pack_into("<QQ", data, first_pfn + 8, 2, 1)  # pfns 1 and 2 swapped
        self.assertRefused(bytes(data), "pattern")

    def test_a_pfn_outside_the_image_or_of_another_page_type_is_refused(self) -> None:
        for bad in (16, 1 << 60 | 3):
            data = bytearray(stream(16))
            pos = [p for p, t, _ in records(bytes(data)) if t == REC_PAGE_DATA][0]
            struct.pack_into("<Q", data, pos + 16 + 8 * 5, bad)
            self.assertRefused(bytes(data), "pfn")

    def test_an_image_with_a_page_missing_is_refused(self) -> None:
        self.assertRefused(stream(16, rounds=[range(15)]), "1 pages of the image never came")

    def test_a_stream_without_the_marker_page_is_refused(self) -> None:
        self.assertRefused(stream(4, rounds=[[1, 2, 3]]), "never came")

    def test_a_corrupt_marker_page_is_refused(self) -> None:
        self.assertRefused(stream(4, page0=b"\xff" * PAGE_SIZE), "marker page")

    def test_a_real_libxc_stream_is_not_a_simulators(self) -> None:
        data = stream(4)
        head = fmt.IHDR.size + fmt.DHDR.size
        x86_pv_info = record(0x2, struct.pack("<BBHI", 8, 4, 0, 0))
        self.assertRefused(data[:head] + x86_pv_info + data[head:], "not a simulated host's stream")

    def test_an_unknown_mandatory_record_is_refused(self) -> None:
        data = stream(4)
        pos = records(data)[-1][0]
        self.assertRefused(data[:pos] + record(0x13) + data[pos:], "record 0x13")

    def test_other_headers_are_refused(self) -> None:
        data = stream(4)
        self.assertRefused(b"LibxlFmt" + data[8:], "not a libxc v2 stream")
        self.assertRefused(data[:12] + struct.pack(">I", 2) + data[16:], "image version 2")
        self.assertRefused(data[:24] + struct.pack("<I", 3) + data[28:], "domain header type 3")

    def test_a_pv_stream_does_not_restore_an_hvm_container(self) -> None:
        self.assertRefused(stream(4), "a pv stream cannot restore a hvm domain", header_type="hvm")

    def test_records_out_of_order_are_refused(self) -> None:
        data = stream(4)
        (_, _, _), (static, _, _), (pages, _, _), (guest, _, _), (end, _, _) = records(data)
        self.assertRefused(data[:static] + data[pages:], "PAGE_DATA out of place")
        self.assertRefused(data[:guest] + data[end:], "lacks STATIC_DATA_END or SIM_GUEST")
        self.assertRefused(data[:pages] + data[guest:end] + data[pages:guest] + data[end:],
                           "PAGE_DATA out of place")

    def test_an_oversized_record_is_refused_before_it_is_read(self) -> None:
        data = stream(4)
        pos = records(data)[2][0]
        self.assertRefused(data[:pos] + struct.pack("<II", REC_PAGE_DATA, 1 << 30), "octets")

    def test_an_end_record_with_a_body_is_refused(self) -> None:
        data = stream(4)
        self.assertRefused(data[:-8] + record(REC_END, b"x"), "END has a body")

    def test_sim_records_of_another_version_are_refused(self) -> None:
        data = bytearray(stream(4))
        pos = [p for p, t, _ in records(bytes(data)) if t == REC_SIM_GUEST][0]
        struct.pack_into("<I", data, pos + 8 + 8, 2)
        self.assertRefused(bytes(data), "version 2")


class PartsTests(TestCase):
    def test_the_marker_page_holds_the_marker_and_zeros(self) -> None:
        page = encode_marker_page(b"abc")
        self.assertEqual((len(page), page[:8], decode_marker_page(page)), (PAGE_SIZE, b"TXSIMMRK", b"abc"))
        with self.assertRaises(StreamError):
            decode_marker_page(page[:-1] + b"x")
        with self.assertRaises(ValueError):
            encode_marker_page(b"x" * 1025)

    def test_pattern_pages_differ_by_pfn_and_seed(self) -> None:
        pages = {pattern_page(seed, pfn) for seed in (1, 2) for pfn in range(1, 50)}
        self.assertEqual(len(pages), 98)
        self.assertEqual(pattern_page(1, 7)[:8] * 512, pattern_page(1, 7))

    def test_the_helpers_part_is_found_in_a_libxl_stream_and_behind_xls_header(self) -> None:
        part = stream(4)
        whole = libxl_stream(part)
        self.assertEqual(split_libxl_stream(whole), (24, 24 + len(part)))
        config = b'{"c_info": {}}\0'
        xl = fmt.XL_HEADER.pack(fmt.XL_MAGIC, 0x01020304, 3, 0, 4 + len(config)) + struct.pack("<I", len(config)) + config
        self.assertEqual(split_libxl_stream(xl + whole), (len(xl) + 24, len(xl) + 24 + len(part)))
        with self.assertRaises(StreamError):
            split_libxl_stream(whole[:100])
        with self.assertRaises(StreamError):
            split_libxl_stream(part)


class CommandLineTests(TestCase):
    def run_stream(self, data: bytes):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        out = io.StringIO()
        self.patch(sim_main.sys, "stdout", out)
        sim_main.main(["stream", path])
        return json.loads(out.getvalue())

    def test_python_m_txlibxl_sim_stream_says_what_a_saved_file_carries(self) -> None:
        part = stream(8, b"seen", rounds=[range(8), [0, 4]])
        report = self.run_stream(libxl_stream(part))
        self.assertEqual((report["uuid"], report["marker"], report["image_kb"]), (str(UUID), "seen", 32))
        self.assertEqual((report["pages_sent"], report["libxl_part"]), (10, [24, 24 + len(part)]))

    def test_it_exits_with_the_reason_a_restore_would_refuse(self) -> None:
        for data in (b"", libxl_stream(stream(8)[:-100])):
            with self.assertRaises(SystemExit) as caught:
                self.run_stream(data)
            self.assertIn(os.sep, str(caught.exception.code))
