#!/usr/bin/env python3
"""Sends malformed TCP packets towards a selected port from a raw socket, so they traverse the
sender's OUTPUT hook (and the receiver's PREROUTING) where mproxyd's queue rules catch them.

The kernel validates the IP header on receive (IHL, total length, checksum) but not TCP, so these
reach NFQUEUE with every TCP-level malformation intact: data offset beyond the packet or below 5,
option length 0 / 1 / past the header, wrong fixed lengths, truncated SACK, garbage MPTCP options,
a TCP header cut short. Prints how many packets it sent.
"""
import argparse
import socket
import struct


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_segment(src, dst, sport, dport, doff, flags, options=b"", payload=b"", fix_csum=True, v6=False):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 12345, 0, doff << 4, flags, 1000, 0, 0)
    seg = hdr + options + payload
    if fix_csum:
        if v6:
            pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
        else:
            pseudo = src + dst + struct.pack("!xBH", 6, len(seg))
        c = csum(pseudo + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return seg


def ipv4(src, dst, seg, ihl=5, ip_opts=b""):
    total = 4 * ihl + len(seg)
    hdr = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, total, 0, 0x4000, 64, 6, 0, src, dst)
    return hdr + ip_opts + seg


def ipv6(src, dst, seg, next_header=6, ext=b""):
    return struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(seg), next_header, 64, src, dst) + ext + seg


def cases(sport, dport, src, dst, v6):
    S, A, F, R = 0x02, 0x10, 0x01, 0x04
    def seg(doff, flags, opts=b"", payload=b"", fix=True):
        return tcp_segment(src, dst, sport, dport, doff, flags, opts, payload, fix, v6)
    yield "doff beyond packet", seg(15, A)                                  # header claims 60 bytes
    yield "doff below 5", seg(2, A, payload=b"x" * 20)
    yield "option length 0", seg(6, A, b"\x08\x00\x01\x01")
    yield "option length 1", seg(6, A, b"\x02\x01\x01\x01")
    yield "option past header", seg(6, A, b"\x08\x0a\x00\x00")
    yield "MSS wrong length", seg(6, S, b"\x02\x05\x05\xb4")
    yield "WS wrong length", seg(6, S, b"\x03\x04\x07\x00")
    yield "SACK odd length", seg(7, A, b"\x01\x01\x05\x07\x00\x00\x00\x01\x00\x00")
    yield "SACK length past header", seg(15, A, b"\x01\x01\x05\x2a" + b"\x00" * 36)
    yield "TS wrong length", seg(7, A, b"\x08\x08\x00\x00\x00\x01\x00\x00\x00\x00")
    yield "MPTCP garbage subtype", seg(7, A, b"\x1e\x06\xf0\x00\xff\xff\x01\x01")
    yield "MPTCP DSS short", seg(6, A, b"\x1e\x04\x20\x0f")
    yield "MPTCP length 2", seg(6, A, b"\x1e\x02\x01\x01")
    yield "MPTCP MPC huge length", seg(6, S, b"\x1e\xff\x01\x01")
    yield "unknown kind past end", seg(6, A, b"\xfe\x08\x00\x00")
    yield "bad checksum", seg(5, A, payload=b"hello", fix=False)
    yield "RST with garbage", seg(6, R | A, b"\x1e\x04\x8f\x09")
    yield "FIN with payload and EOL", seg(6, F | A, b"\x00\x01\x02\x03", b"data")
    yield "truncated TCP header", seg(5, A)[:12]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--dport", type=int, default=5201)
    p.add_argument("--sport", type=int, default=40123)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    v6 = ":" in a.dst
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    src = socket.inet_pton(fam, a.src)
    dst = socket.inet_pton(fam, a.dst)
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = 0
    for _ in range(a.repeat):
        for name, seg in cases(a.sport, a.dport, src, dst, v6):
            pkts = [ipv6(src, dst, seg)] if v6 else [ipv4(src, dst, seg)]
            if not v6:
                # IPv4 options (a NOP run and an EOL) in front of the same segment.
                pkts.append(ipv4(src, dst, seg, ihl=6, ip_opts=b"\x01\x01\x01\x00"))
            else:
                # A Destination Options extension header (PadN) before the TCP header.
                pkts.append(ipv6(src, dst, seg, next_header=60, ext=b"\x06\x00\x01\x04\x00\x00\x00\x00"))
            for pkt in pkts:
                try:
                    s.sendto(pkt, (a.dst, 0))
                    sent += 1
                except OSError:
                    pass
    print(sent)


if __name__ == "__main__":
    main()
