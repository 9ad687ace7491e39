#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers (packets, TCP options, rtnetlink and NFQUEUE messages,
control-protocol lines, MPTCP engine packet sequences).

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



# --- ICMP frag-needed / packet-too-big (RFC 1191 §4, RFC 4443 §3.2) quoting a TCP segment ------
def icmp4(src, dst, typ, code, rest4, body):
    msg = struct.pack("!BBH", typ, code, 0) + rest4 + body
    msg = msg[:2] + struct.pack("!H", finish(csum_sum(msg))) + msg[4:]
    s, d = v4(src), v4(dst)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(msg), 0x4321, 0, 64, 1, 0, s, d)
    h = h[:10] + struct.pack("!H", finish(csum_sum(h))) + h[12:]
    return h + msg


def icmp6(src, dst, typ, code, rest4, body):
    s, d = v6(src), v6(dst)
    msg = struct.pack("!BBH", typ, code, 0) + rest4 + body
    ph = s + d + struct.pack("!IxxxB", len(msg), 58)
    msg = msg[:2] + struct.pack("!H", finish(csum_sum(ph + msg))) + msg[4:]
    return struct.pack("!IHBB16s16s", 0x60000000, len(msg), 58, 64, s, d) + msg


# The quoted segment: a full-size data segment as the router saw it (length field 1500), of which
# the router quotes the start (Linux: as much as fits in 576 bytes for IPv4, 1280 for IPv6).
_Q4 = ipv4("198.18.0.1", "198.18.0.2", lambda ph: tcp(
    40000, 5201, 0x01020305, 0x0A0B0C0E, 0x18, 502,
    bytes([1, 1, 8, 10]) + struct.pack("!II", 0x0A0B0C0E, 0x01010101), b"x" * 1448, ph))
_Q6 = ipv6("2001:db8::1", "2001:db8::2", lambda ph: tcp(
    40000, 5201, 0x80000000, 0x7FFFFFFF, 0x18, 1024,
    bytes([1, 1, 8, 10]) + struct.pack("!II", 100, 200), b"y" * 1388, ph))
ICMP_PACKETS = {
    # 198.18.9.1 (router) -> 198.18.0.1: frag needed, next-hop MTU 1280, 548-byte quote.
    "icmp4_frag_needed": icmp4("198.18.9.1", "198.18.0.1", 3, 4, struct.pack("!HH", 0, 1280),
                               _Q4[:548]),
    # The RFC 792 minimum: IP header + 8 bytes of TCP.
    "icmp4_quote8": icmp4("198.18.9.1", "198.18.0.1", 3, 4, struct.pack("!HH", 0, 1400), _Q4[:28]),
    # 2001:db8::9 -> 2001:db8::1: packet too big, MTU 1400, 1232-byte quote.
    "icmp6_packet_too_big": icmp6("2001:db8::9", "2001:db8::1", 2, 0, struct.pack("!I", 1400),
                                  _Q6[:1232]),
    "icmp6_quote8": icmp6("2001:db8::9", "2001:db8::1", 2, 0, struct.pack("!I", 1280), _Q6[:48]),
    # Not ours: an echo request.
    "icmp4_echo": icmp4("198.18.9.1", "198.18.0.1", 8, 0, struct.pack("!HH", 1, 1), b"ping"),
}

# tcp_options_fuzz input: one byte selecting the edits, then the option area.
OPTION_SEEDS = {
    "syn": b"\x1b" + SYN_OPTS,
    "mp_capable_eol": b"\xe4" + bytes([2, 4, 0x05, 0xB4]) + MP_CAPABLE_SYN + bytes([0, 0, 0, 0]),
    "sack4": b"\x39" + bytes([5, 34]) + bytes(range(32)) + bytes([1, 1, 1, 1, 1, 1]),
    "dss": b"\x72" + bytes([1, 1]) + DSS_ACK + bytes([1, 1]),
    "unknown": b"\xc6" + bytes([254, 6, 0xF9, 0x89, 0, 0, 1, 1]),
}


# --- netlink (native byte order for headers, as the kernel sends them on this host) -------------

def nlattr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def nlmsg(kind, body, flags=0, seq=1):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWRULE = 16, 20, 24, 32
AF_INET, AF_INET6 = 2, 10

RTNL_SEEDS = {
    "link_wlan0": nlmsg(RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 2, 0x11043, 0)
                        + nlattr(3, b"wlan0\0")),
    "addr4": nlmsg(RTM_NEWADDR, struct.pack("=BBBBI", AF_INET, 24, 0x80, 0, 3)
                   + nlattr(1, v4("198.18.2.2")) + nlattr(2, v4("198.18.2.2"))
                   + nlattr(8, struct.pack("=I", 0x80))),
    "addr6": nlmsg(RTM_NEWADDR, struct.pack("=BBBBI", AF_INET6, 64, 0x80, 0, 3)
                   + nlattr(1, v6("2001:db8:2::2")) + nlattr(8, struct.pack("=I", 0x280))),
    "route_default": nlmsg(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 254, 4, 0, 1, 0)
                           + nlattr(15, struct.pack("=I", 254)) + nlattr(6, struct.pack("=I", 200))
                           + nlattr(5, v4("198.18.2.1")) + nlattr(4, struct.pack("=I", 3))),
    "route_prefix6": nlmsg(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", AF_INET6, 64, 0, 0, 254, 2, 253, 1, 0)
                           + nlattr(15, struct.pack("=I", 254)) + nlattr(1, v6("2001:db8:2::"))
                           + nlattr(4, struct.pack("=I", 3)) + nlattr(7, v6("2001:db8:2::2"))),
    "rules": nlmsg(RTM_NEWRULE, struct.pack("=BBBBBBBBI", AF_INET, 0, 32, 0, 0, 0, 0, 1, 0)
                   + nlattr(6, struct.pack("=I", 19793)) + nlattr(15, struct.pack("=I", 19793))
                   + nlattr(2, v4("198.18.2.2")))
             + nlmsg(RTM_NEWRULE, struct.pack("=BBBBBBBBI", AF_INET6, 0, 0, 0, 0, 0, 0, 1, 0)
                     + nlattr(6, struct.pack("=I", 19793)) + nlattr(15, struct.pack("=I", 19793))
                     + nlattr(10, struct.pack("=I", 0x20000)) + nlattr(16, struct.pack("=I", 0xff0000))),
    "ack_done": nlmsg(2, struct.pack("=i", 0) + struct.pack("=IHHII", 36, RTM_NEWRULE, 5, 7, 0))
                + nlmsg(2, struct.pack("=i", -17) + struct.pack("=IHHII", 36, RTM_NEWROUTE, 5, 8, 0))
                + nlmsg(3, struct.pack("=i", 0)),
}


def nfq_packet(pkt, hook, skb_info=0, cap_len=None, mark=0):
    hdr = struct.pack("!IHB", 7, 0x0800 if pkt[0] >> 4 == 4 else 0x86DD, hook)
    body = struct.pack("!BBH", AF_INET, 0, 0)  # nfgenmsg: family, version, res_id
    body += nlattr(1, hdr) + nlattr(3, struct.pack("!I", mark)) + nlattr(5, struct.pack("!I", 2))
    body += nlattr(14, struct.pack("!I", skb_info))
    if cap_len is not None:
        body += nlattr(13, struct.pack("!I", cap_len))
    body += nlattr(10, pkt)
    return nlmsg((3 << 8) | 0, body)


def control_seeds():
    return {
        "req_stats": b'{"v":1,"command":"stats","args":{}}\n',
        "req_handover": b'{"v":1,"command":"handover","args":{"from":"wlan0","to":"eth1","break":true,"conn":"1a2b3c4d"}}',
        "resp_ok": b'{"v":1,"ok":true,"data":{"connections":[{"bytes_rx":1,"subflows":[{"interface":"eth1"}]}]}}',
        "resp_err": b'{"v":1,"ok":false,"error":"handover: interface usb0 is gone \\u00e9"}\n',
        "bad": b'{"v":2,"command":5,"args":[]}',
    }


# --- mptcp_engine_fuzz: records (op, [len16, packet]) of one active-open connection ------------

def engine_seeds():
    import hashlib
    key_b = 0x0102030405060708
    idsn_b = int.from_bytes(hashlib.sha256(key_b.to_bytes(8, "big")).digest()[24:], "big")
    loc, rem = "198.18.1.2", "198.18.3.2"
    ts = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)

    def out(seq, ack, flags, opts=b"", payload=b""):
        return ipv4(loc, rem, lambda ph: tcp(40000, 5201, seq, ack, flags, 502, opts, payload, ph))

    def inn(seq, ack, flags, opts=b"", payload=b""):
        return ipv4(rem, loc, lambda ph: tcp(5201, 40000, seq, ack, flags, 509, opts, payload, ph))

    def rec(op, pkt):
        return bytes([op]) + struct.pack("!H", len(pkt)) + pkt

    syn_opts = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + struct.pack("!II", 1000, 0) + bytes([1, 3, 3, 7])
    mpc_synack = bytes([30, 12, 0x01, 0x01]) + key_b.to_bytes(8, "big")
    dss_in = bytes([30, 22, 0x20, 0x05]) + struct.pack("!I", 0) + struct.pack("!QIH", idsn_b + 1, 1, 100) + bytes([1, 1])
    handshake = (rec(0x00, out(1000, 0, 0x02, syn_opts))
                 + rec(0x40, inn(5000, 1001, 0x12, bytes([2, 4, 0x05, 0xB4]) + mpc_synack))
                 + rec(0x00, out(1001, 5001, 0x10, ts)))
    data = (rec(0x00, out(1001, 5001, 0x18, ts, b"x" * 200))
            + rec(0x40, inn(5001, 1201, 0x18, ts + dss_in, b"y" * 100))
            + rec(0x20, out(1201, 5101, 0x18, ts, b"z" * 3000)))
    return {
        "handshake_data": handshake + data,
        "handover_mbb": handshake + data + bytes([0xC0, 0x88]) + rec(0x00, out(4201, 5101, 0x18, ts, b"w" * 64)),
        "handover_bbm_fin": handshake + data + bytes([0xC1, 0x90, 0xC2]) + rec(0x00, out(4201, 5101, 0x11, ts)),
        "passive_syn": rec(0x40, inn(7000, 0, 0x02, syn_opts[:-4] + bytes([30, 4, 0x01, 0x81]))) + bytes([0xBF]),
    }


def main():
    if "--hex" in sys.argv:
        for name, pkt in list(PACKETS.items()) + list(ICMP_PACKETS.items()):
            print(name, pkt.hex())
        return
    nfq = {
        "out_syn": nfq_packet(PACKETS["ipv4_syn"], 3),
        "in_gso_csum": nfq_packet(PACKETS["ipv6_ext_data"], 0, skb_info=3),
        "truncated": nfq_packet(PACKETS["ipv4_data"], 0, cap_len=9000, mark=0x42),
    }
    for sub, items in (("packet_parse_fuzz", PACKETS), ("tcp_options_fuzz", OPTION_SEEDS),
                       ("icmp_ptb_fuzz", ICMP_PACKETS),
                       ("rtnetlink_fuzz", RTNL_SEEDS), ("nfqueue_message_fuzz", nfq),
                       ("control_protocol_fuzz", control_seeds()),
                       ("mptcp_engine_fuzz", engine_seeds())):
        d = os.path.join(HERE, "corpus", sub)
        os.makedirs(d, exist_ok=True)
        for name, data in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
