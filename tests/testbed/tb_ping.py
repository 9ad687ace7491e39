#!/usr/bin/env python3
"""ICMP echo for the testbed (the build machines have no iputils ping).

Usage: tb_ping.py [-c COUNT] [-i INTERVAL_S] [-W WAIT_S] [-I SRC_ADDR] [-q] DEST
Output follows iputils ping's summary lines, so scripts parse either the same way:
  N packets transmitted, M received, L% packet loss
  rtt min/avg/max/mdev = a/b/c/d ms
Exit status: 0 if any reply arrived, 1 if none, 2 on usage or socket errors.
Needs CAP_NET_RAW (raw ICMP sockets; the testbed runs as root inside its namespaces).
"""
import argparse
import ipaddress
import os
import random
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", type=int, default=4, help="echo requests to send")
    ap.add_argument("-i", type=float, default=0.2, help="interval between requests (s)")
    ap.add_argument("-W", type=float, default=2.0, help="wait for the last replies (s)")
    ap.add_argument("-I", dest="src", default=None, help="source address to bind")
    ap.add_argument("-s", type=int, default=56, help="payload bytes")
    ap.add_argument("-q", action="store_true", help="summary only")
    ap.add_argument("dest")
    a = ap.parse_args()

    try:
        dst = ipaddress.ip_address(a.dest)
    except ValueError:
        print(f"tb_ping: {a.dest}: not an IP address", file=sys.stderr)
        return 2
    v6 = dst.version == 6
    try:
        if v6:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        if a.src:
            sock.bind((a.src, 0))
    except OSError as e:
        print(f"tb_ping: socket: {e}", file=sys.stderr)
        return 2

    ident = (os.getpid() ^ random.randrange(1 << 16)) & 0xFFFF
    req_type, rep_type = (128, 129) if v6 else (8, 0)
    payload = bytes((i & 0xFF) for i in range(a.s))
    sent = {}
    rtts = []
    seq = 0
    next_send = time.monotonic()
    end = None
    while True:
        now = time.monotonic()
        if seq < a.c and now >= next_send:
            seq += 1
            hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
            # The kernel fills the ICMPv6 checksum (it needs the pseudo-header); ICMPv4 is ours.
            csum = 0 if v6 else checksum(hdr + payload)
            pkt = struct.pack("!BBHHH", req_type, 0, csum, ident, seq) + payload
            sent[seq] = time.monotonic()
            try:
                sock.sendto(pkt, (a.dest, 0))
            except OSError as e:
                if not a.q:
                    print(f"tb_ping: send icmp_seq={seq}: {e}")
            next_send += a.i
            if seq == a.c:
                end = time.monotonic() + a.W
        if end is not None and (time.monotonic() >= end or len(rtts) == a.c):
            break
        wake = end if seq >= a.c else next_send
        timeout = max(0.0, wake - time.monotonic())
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            continue
        data, addr = sock.recvfrom(65535)
        t = time.monotonic()
        icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
        if len(icmp) < 8:
            continue
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ != rep_type or rid != ident or rseq not in sent:
            continue
        rtt = (t - sent.pop(rseq)) * 1000.0
        rtts.append(rtt)
        if not a.q:
            print(f"{len(icmp)} bytes from {addr[0]}: icmp_seq={rseq} time={rtt:.3f} ms")

    tx, rx = seq, len(rtts)
    loss = 100.0 * (tx - rx) / tx if tx else 0.0
    print(f"--- {a.dest} ping statistics ---")
    print(f"{tx} packets transmitted, {rx} received, {loss:g}% packet loss")
    if rtts:
        avg = sum(rtts) / rx
        mdev = (sum((x - avg) ** 2 for x in rtts) / rx) ** 0.5
        print(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{avg:.3f}/{max(rtts):.3f}/{mdev:.3f} ms")
    return 0 if rx else 1


if __name__ == "__main__":
    sys.exit(main())
