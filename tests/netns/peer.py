#!/usr/bin/env python3
"""Traffic peer for the namespaced tests: plain TCP or native Linux MPTCP (IPPROTO_MPTCP = 262).

Each connection sends `--send` bytes and receives until EOF at the same time, hashing both
directions, then prints one JSON line per connection:
  {"conn": i, "tx_bytes": .., "tx_sha256": .., "rx_bytes": .., "rx_sha256": .., "mptcp": {...}|null}
`mptcp` comes from getsockopt(SOL_MPTCP, MPTCP_INFO) taken after the transfer (interop reference
§7): fallback flag, remote-key-received flag, token, subflows, checksum. A transfer that "works"
proves nothing about MPTCP (a native listener accepts plain TCP too), so tests assert on it.

The payload is a pseudo-random block of prime length repeated, so a byte delivered at the wrong
offset always changes the hash.
"""
import argparse
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
BLOCK = random.Random(20261121).randbytes(1_048_573)


def mptcp_info(sock):
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
    except OSError:
        return None
    if len(raw) < 44:
        return None
    subflows, signal, accepted, subflows_max = raw[0], raw[1], raw[2], raw[3]
    flags, token = struct.unpack_from("=II", raw, 8)
    write_seq, snd_una, rcv_nxt = struct.unpack_from("=QQQ", raw, 16)
    return {
        "subflows": subflows,
        "add_addr_signal": signal,
        "add_addr_accepted": accepted,
        "subflows_max": subflows_max,
        "fallback": bool(flags & 1),
        "remote_key_received": bool(flags & 2),
        "token": token,
        "write_seq": write_seq,
        "snd_una": snd_una,
        "rcv_nxt": rcv_nxt,
        "csum_enabled": bool(raw[42]),
    }


def sender(sock, total, result, delay, fin=True):
    h = hashlib.sha256()
    sent = 0
    view = memoryview(BLOCK)
    try:
        if delay:
            time.sleep(delay)
        while sent < total:
            off = sent % len(BLOCK)
            chunk = view[off:off + min(len(BLOCK) - off, total - sent, 262144)]
            n = sock.send(chunk)
            h.update(chunk[:n])
            sent += n
        if fin:
            sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        result["tx_error"] = str(e)
    result["tx_bytes"] = sent
    result["tx_sha256"] = h.hexdigest()


def transfer(sock, i, args):
    result = {"conn": i}
    t = threading.Thread(target=sender,
                         args=(sock, args.send, result, args.send_delay, not args.no_fin))
    t.start()
    h = hashlib.sha256()
    got = 0
    trace = [] if args.trace else None
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            h.update(data)
            got += len(data)
            if trace is not None:
                trace.append((time.time(), got))
    except OSError as e:
        result["rx_error"] = str(e)
    t.join()
    if trace is not None:
        # Received bytes (= data sequence offset) against wall-clock time, one line per recv():
        # the plottable DSN-versus-time trace of a handover bench.
        with open("%s.%d" % (args.trace, i), "w") as f:
            f.write("time_s,bytes\n")
            f.writelines("%.6f,%d\n" % e for e in trace)
    result["rx_bytes"] = got
    result["rx_sha256"] = h.hexdigest()
    result["mptcp"] = mptcp_info(sock)
    if args.linger:
        time.sleep(args.linger)
    if args.reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return result


def make_socket(args):
    fam = socket.AF_INET6 if args.family == 6 else socket.AF_INET
    proto = IPPROTO_MPTCP if args.proto == "mptcp" else 0
    return socket.socket(fam, socket.SOCK_STREAM, proto)


def emit(result, lock):
    with lock:
        print(json.dumps(result), flush=True)


def server(args):
    ls = make_socket(args)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::" if args.family == 6 else "0.0.0.0", args.port))
    ls.listen(256)
    if args.ready:
        open(args.ready, "w").close()
    lock = threading.Lock()
    threads = []
    ls.settimeout(args.timeout)
    for i in range(args.conns):
        try:
            c, _ = ls.accept()
        except socket.timeout:
            print(json.dumps({"error": "accept timeout"}), flush=True)
            return 1
        c.settimeout(args.timeout)
        t = threading.Thread(target=lambda c=c, i=i: emit(transfer(c, i, args), lock))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return 0


def client(args):
    lock = threading.Lock()
    threads = []
    rc = [0]

    def one(i):
        s = make_socket(args)
        s.settimeout(args.timeout)
        if args.bind:
            s.bind((args.bind, 0))
        try:
            s.connect((args.connect, args.port))
        except OSError as e:
            emit({"conn": i, "error": "connect: %s" % e}, lock)
            rc[0] = 1
            return
        emit(transfer(s, i, args), lock)

    for i in range(args.conns):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return rc[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--port", type=int, default=5201)
    p.add_argument("--connect", help="server address (client mode)")
    p.add_argument("--bind", help="local address to bind (client mode)")
    p.add_argument("--proto", choices=["tcp", "mptcp"], default="tcp")
    p.add_argument("--family", type=int, choices=[4, 6], default=4)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--send", type=int, default=0, help="bytes to send on each connection")
    p.add_argument("--send-delay", type=float, default=0.0, help="seconds before sending")
    p.add_argument("--linger", type=float, default=0.0, help="seconds to keep the socket after EOF")
    p.add_argument("--reset", action="store_true", help="close with RST (SO_LINGER 0)")
    p.add_argument("--no-fin", action="store_true",
                   help="never shut down the sending side (with --reset: the RST ends it)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ready", help="file to create once listening (server mode)")
    p.add_argument("--trace", help="write received bytes versus time to TRACE.<conn> (CSV)")
    args = p.parse_args()
    return server(args) if args.mode == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
