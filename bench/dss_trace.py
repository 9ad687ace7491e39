#!/usr/bin/env python3
"""DSN/DAN-versus-time trace of one transfer, as the seed's Figure 8 plots it (seed §5.3).

Reads header captures of the mobile host's interfaces (tcpdump -s 128, one per interface) and
prints CSV rows: time_s,iface,kind,offset,len
  kind dsn: a data segment arriving at the mobile host; offset = its data sequence number
            (mapping DSN + its distance from the mapping's subflow sequence number), len = payload
  kind dan: a DATA_ACK leaving the mobile host; offset = the acknowledged data sequence number
Offsets are relative to the first data segment's DSN, times to the first captured packet.

  bench/dss_trace.py MOBILE_ADDRS wlan0=FILE.pcap eth1=FILE.pcap > trace.csv

MOBILE_ADDRS: comma-separated addresses of the mobile host (tells arriving from leaving).
Needs tshark (the MPTCP dissector decodes DSS; 64-bit DSNs as the raw values Linux sends).
"""
import subprocess
import sys

FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "tcp.seq", "tcp.len",
          "tcp.options.mptcp.rawdataseqno", "tcp.options.mptcp.subflowseqno",
          "tcp.options.mptcp.rawdataack"]


def rows(path):
    cmd = ["tshark", "-r", path, "-Y", "mptcp", "-T", "fields", "-E", "separator=;"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        v = line.split(";")
        if len(v) != len(FIELDS):
            continue
        yield v


def first(x):
    return x.split(",")[0] if x else ""


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mobile = set(sys.argv[1].split(","))
    events = []
    for arg in sys.argv[2:]:
        iface, path = arg.split("=", 1)
        for t, src4, src6, seq, ln, dsn, ssn, dan in rows(path):
            src = src4 or src6
            t = float(t)
            if src not in mobile and first(dsn) and first(ssn) and int(ln or 0) > 0:
                off = int(first(dsn)) + int(seq) - int(first(ssn))
                events.append((t, iface, "dsn", off, int(ln)))
            elif src in mobile and first(dan):
                events.append((t, iface, "dan", int(first(dan)), 0))
    if not events:
        return
    events.sort()
    t0 = events[0][0]
    # The first data segment's DSN is the origin; a 32-bit DATA_ACK (or a value the dissector
    # could not expand) would be far away from it and is left out.
    base = next(e[3] for e in events if e[2] == "dsn")
    print("time_s,iface,kind,offset,len")
    for t, iface, kind, off, ln in events:
        if abs(off - base) < 1 << 40:
            print("%.6f,%s,%s,%d,%d" % (t - t0, iface, kind, off - base, ln))


if __name__ == "__main__":
    main()
