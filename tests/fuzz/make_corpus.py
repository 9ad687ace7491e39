#!/usr/bin/env python3
"""Writes the seed corpora of packet_parse_fuzz and tcp_options_fuzz.

The packets are built here, independently of the C++ code (own checksum implementation), and
look like what Linux sends: a SYN with MSS/SACK-permitted/timestamps/window scale, an IPv6 data
segment behind Hop-by-Hop and Destination Options headers, MPTCP MP_CAPABLE and DSS segments.
The unit tests (tests/unit/packet/) embed the same packets as golden bytes; `--hex` prints them.

Usage: tests/fuzz/make_corpus.py [--hex]
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def csum_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def finish(s: int) -> int:
    return (~s) & 0xFFFF


def v4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def v6(a: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def tcp(sport, dport, seq, ack, flags, window, options=b"", payload=b"", pseudo=None):
    assert len(options) % 4 == 0 and len(options) <= 40
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0)
    seg = hdr + options + payload
    c = finish(csum_sum(pseudo(len(seg)) + seg))
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv4(src, dst, segment_fn, ident=0x1234, ttl=64):
    s, d = v4(src), v4(dst)
    seg = segment_fn(lambda n: s + d + struct.pack("!BBH", 0, 6, n))
    total = 20 + len(seg)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, ttl, 6, 0, s, d)
    h = h[:10] + struct.pack("!H", finish(csum_sum(h))) + h[12:]
    return h + seg


def ipv6(src, dst, segment_fn, ext=b"", first_nh=6):
    s, d = v6(src), v6(dst)
    seg = segment_fn(lambda n: s + d + struct.pack("!IxxxB", n, 6))
    h = struct.pack("!IHBB16s16s", 0x60000000, len(ext) + len(seg), first_nh, 64, s, d)
    return h + ext + seg


SYN_OPTS = (bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + struct.pack("!II", 0x0A0B0C0D, 0)
            + bytes([1, 3, 3, 7]))

# MP_CAPABLE in a SYN (RFC 8684 §3.1): kind 30, length 4, subtype 0 | version 1, flags A|H.
MP_CAPABLE_SYN = bytes([30, 4, 0x01, 0x81])
# DSS (RFC 8684 §3.3): kind 30, length 8, subtype 2, flags A (32-bit DATA_ACK).
DSS_ACK = bytes([30, 8, 0x20, 0x01]) + struct.pack("!I", 0x11223344)

PACKETS = {
    # Linux-style SYN: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    "ipv4_syn": ipv4("198.18.0.1", "198.18.0.2",
                     lambda ph: tcp(40000, 80, 0x01020304, 0, 0x02, 64240, SYN_OPTS, b"", ph)),
    # SYN with MP_CAPABLE, an unknown option (kind 254 experimental), EOL and padding.
    "ipv4_syn_mptcp": ipv4("198.18.0.1", "198.18.0.2", lambda ph: tcp(
        40001, 80, 0xFFFFFFF0, 0, 0x02, 64240,
        bytes([2, 4, 0x05, 0xB4, 3, 3, 7, 4, 2]) + struct.pack("!BBII", 8, 10, 1, 0)
        + MP_CAPABLE_SYN + bytes([1, 254, 4, 0xAB, 0xCD, 0, 0, 0, 0]), b"", ph)),
    # ACK with SACK (2 blocks), timestamps and an MPTCP DSS: exactly 40 option bytes.
    "ipv4_sack_dss": ipv4("198.18.0.2", "198.18.0.1", lambda ph: tcp(
        80, 40000, 0x11111111, 0x22222222, 0x10, 501,
        bytes([1, 1, 5, 18]) + struct.pack("!IIII", 0x22222300, 0x22222400, 0x22222500,
                                           0x22222600)
        + bytes([1, 1, 8, 10]) + struct.pack("!II", 7, 8) + DSS_ACK, b"", ph)),
    # IPv6 data segment behind Hop-by-Hop (PadN) and Destination Options (PadN) headers.
    "ipv6_ext_data": ipv6("2001:db8::1", "2001:db8::2", lambda ph: tcp(
        443, 50000, 0x80000000, 0x7FFFFFFF, 0x18, 1024,
        bytes([1, 1, 8, 10]) + struct.pack("!II", 100, 200), b"hello, mptcp", ph),
        ext=bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([6, 0, 1, 4, 0, 0, 0, 0]), first_nh=0),
    # IPv4 data segment with an odd payload length.
    "ipv4_data": ipv4("198.18.0.1", "198.18.0.2", lambda ph: tcp(
        40000, 80, 0x01020305, 0x0A0B0C0E, 0x18, 502,
        bytes([1, 1, 8, 10]) + struct.pack("!II", 0x0A0B0C0E, 0x01010101), b"GET / HTTP/1.0\r\n\r\n!", ph)),
}

# tcp_options_fuzz input: one byte selecting the edits, then the option area.
OPTION_SEEDS = {
    "syn": b"\x1b" + SYN_OPTS,
    "mp_capable_eol": b"\xe4" + bytes([2, 4, 0x05, 0xB4]) + MP_CAPABLE_SYN + bytes([0, 0, 0, 0]),
    "sack4": b"\x39" + bytes([5, 34]) + bytes(range(32)) + bytes([1, 1, 1, 1, 1, 1]),
    "dss": b"\x72" + bytes([1, 1]) + DSS_ACK + bytes([1, 1]),
    "unknown": b"\xc6" + bytes([254, 6, 0xF9, 0x89, 0, 0, 1, 1]),
}


def main():
    if "--hex" in sys.argv:
        for name, pkt in PACKETS.items():
            print(name, pkt.hex())
        return
    for sub, items in (("packet_parse_fuzz", PACKETS), ("tcp_options_fuzz", OPTION_SEEDS)):
        d = os.path.join(HERE, "corpus", sub)
        os.makedirs(d, exist_ok=True)
        for name, data in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
