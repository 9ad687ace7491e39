#!/usr/bin/env bash
# Handover bench (issue 4 case 5, seed §5.3-5.4 trials): the mobile host's plain-TCP client behind
# mproxyd downloads from a native Linux MPTCP server over paths with 30 ms of delay each (the seed
# added 30 ms to both paths; here the delay line on the router's egress towards the mobile host).
#
#   bench/handover.sh [BYTES]        (root; builds nothing: run scripts/setup.sh first)
#   MPROXY_BENCH_CASES="mbb flip" bench/handover.sh     (only these of: seed_mbb seed_pp_mbb mbb
#                                                        pp_mbb flip bbm_sack bbm_nosack)
#   MPROXY_BENCH_PCAP=0|1 bench/handover.sh             (header captures of the wire, $OUT/*.pcap;
#                                                        default on except for the seed_* cases)
#   MPROXY_BENCH_RATE=50mbit, MPROXY_BENCH_SEED_BYTES=N (the bottleneck rate, the seed cases' size)
#
# Two settings: first as in the seed's trials (delay line only, no rate limit; a big download so
# that the handover happens mid-transfer), then with a 100 Mbit/s rate limiter (tbf, 50 ms queue)
# on each path. Cases (pp_* = PROXY <-> PROXY, a plain server behind mproxyd; else the server is
# native Linux MPTCP):
#   make-before-break  (seed_mbb, seed_pp_mbb, mbb, pp_mbb) the longest gap between two received
#                      chunks within 1 s of the handover, next to the longest gap in the same
#                      transfer away from it and the path RTT idle and loaded
#                      (target: no gap beyond one RTT + 10 ms)
#   break-before-make  (bbm_sack, bbm_nosack) wlan0 goes down, `mproxyctl handover wlan0 eth1
#                      --break` right after: time from the link going down to the next received
#                      byte, with and without SACK (the seed reports ~250 ms with SACK and ~4.4 s
#                      without), and the longest gap around it
#   flip               `handover wlan0 eth1` then at once `handover eth1 wlan0 --break`: the
#                      transfer must survive (it used to stall), longest gap around it
#   overlap_mbb        (only when named in MPROXY_BENCH_CASES) `subflow add eth1` as a regular
#                      subflow, OVERLAP_MS (300) later the handover: the new subflow's slow start
#                      happens beside the old path instead of after it
# Each case also prints the sender's retransmitted segments and the rate limiter's drops: a gap
# of one loaded RTT is a loss repaired by the sender.
# and leaves plottable CSV traces in $MPROXY_BENCH_OUT (default /tmp/mproxy-handover-bench):
# NAME.csv.0 received bytes versus time at the application, NAME.dss.csv the DSN of arriving data
# and the DATA_ACK sent per interface versus time on the mobile host's wire (the seed's Figure 8;
# bench/dss_trace.py, from the header captures).
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
MPROXY_BUILD=${MPROXY_BUILD:-$MPROXY_SRC/build}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
tb_require_root
BYTES=${1:-$((48 * 1024 * 1024))}
OUT=${MPROXY_BENCH_OUT:-/tmp/mproxy-handover-bench}
mkdir -p "$OUT"
DELAY_MS=30
RATE=${MPROXY_BENCH_RATE:-100mbit}
SEED_BYTES=${MPROXY_BENCH_SEED_BYTES:-$((768 * 1024 * 1024))}

tb_create
mptcp_sysctl server
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2
for i in wlan0 eth1; do tb_delay router "r-$i" "$DELAY_MS"; done
RTT_MS=$(tb_ping_stats mobile "$TB_SERVER4" -c 5 -i 0.2 | awk '{print $3}')

# gaps TRACE T0: "longest gap within 1 s of T0 (ms)  longest gap elsewhere (ms)".
gaps() {
  python3 - "$1" "$2" <<'EOF'
import sys
rows = [tuple(map(float, l.split(","))) for l in open(sys.argv[1]).read().split("\n")[1:] if l]
t0 = float(sys.argv[2])
near = far = 0.0
for (a, _), (b, _) in zip(rows, rows[1:]):
    g = (b - a) * 1000
    if a >= t0 - 1 and a <= t0 + 1:
        near = max(near, g)
    elif a > rows[0][0] + 0.5 and b < rows[-1][0] - 0.2:  # steady state, no slow start or FIN
        far = max(far, g)
print("%.1f %.1f" % (near, far))
EOF
}
# recovery TRACE T0: ms from T0 to the first receive after it.
recovery() {
  python3 - "$1" "$2" <<'EOF'
import sys
rows = [tuple(map(float, l.split(","))) for l in open(sys.argv[1]).read().split("\n")[1:] if l]
t0 = float(sys.argv[2])
after = [t for t, _ in rows if t > t0]
print("%.0f" % ((after[0] - t0) * 1000) if after else "none")
EOF
}

# snmp NODE GROUP NAME: absolute /proc/net/{snmp,netstat} counter of the node's namespace.
snmp() {
  tb_exec "$1" cat /proc/net/snmp /proc/net/netstat | awk -v g="$2:" -v want="$3" '
    $1 == g && !(g in hdr) { for (i = 2; i <= NF; i++) name[i] = $i; hdr[g] = 1; next }
    $1 == g { for (i = 2; i <= NF; i++) if (name[i] == want) { print $i; found = 1 } }
    END { if (!found) print 0 }'
}
# drops NODE IF: packets the qdisc (tbf: the bottleneck) dropped so far.
drops() {
  tb_exec "$1" tc -s qdisc show dev "$2" | awk '/dropped/ { sub(",", "", $7); print $7; exit }'
}
# Where the time goes: a gap of one loaded RTT is a lost segment repaired by the sender.
losses() {
  echo "server retransmitted $(($(snmp server Tcp RetransSegs) - $1)) segments;" \
    "bottleneck drops wlan0 $(($(drops router r-wlan0) - $2)) eth1 $(($(drops router r-eth1) - $3))"
}

run() {  # run NAME MODE [BYTES]: one download with a handover after 1/3 of it; prints its figures
  local name=$1 mode=$2 t0 rc srtt
  local BYTES=${3:-$BYTES}
  [[ " ${MPROXY_BENCH_CASES:-$name} " == *" $name "* ]] || return 0
  local retx0 dw0 de0
  retx0=$(snmp server Tcp RetransSegs) dw0=$(drops router r-wlan0) de0=$(drops router r-eth1)
  proxy_start mobile hb --engine mptcp --ports 5201 --fail-policy closed --interfaces wlan0,eth1 \
    >/dev/null || return 1
  local proto=mptcp
  if [[ $name == *pp_* ]]; then
    # PROXY <-> PROXY: a plain server behind mproxyd, one congestion control end to end.
    proxy_start server hs --engine mptcp --ports 5201 --fail-policy closed >/dev/null || return 1
    proto=tcp
  fi
  local caps=() pcap=${MPROXY_BENCH_PCAP:-1}
  # Without a rate limit the transfer runs at Gbit/s: tcpdump would cost the CPU it needs.
  [[ $name == seed_* && -z ${MPROXY_BENCH_PCAP:-} ]] && pcap=0
  if [[ $pcap == 1 ]]; then
    # Headers only, on the wire side of both hosts: $OUT/NAME.{server,wlan0,eth1}.pcap.
    tb_bg server "$OUT/$name.server.tcpdump.log" tcpdump -i eth0 -s 128 -w "$OUT/$name.server.pcap" tcp >/dev/null
    caps+=("$TB_BG_PID")
    for i in wlan0 eth1; do
      tb_bg mobile "$OUT/$name.$i.tcpdump.log" tcpdump -i "$i" -s 128 -w "$OUT/$name.$i.pcap" tcp >/dev/null
      caps+=("$TB_BG_PID")
    done
    sleep 0.5
  fi
  peer_server server "s_$name" --proto "$proto" --send "$BYTES"
  # --no-fin: Linux refuses joins once the peer half-closed, so the client keeps its side open.
  tb_exec mobile python3 "$PEER" client --connect "$TB_SERVER4" --send 0 --no-fin \
    --trace "$OUT/$name.csv" >"$TB_DIR/c_$name.json" &
  local client=$!
  sleep 0.3
  while (($(proxy_ctl mobile hb -j conn show 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin).get("connections", [])
print(c[0]["bytes_rx"] if c else 0)' 2>/dev/null || echo 0) < BYTES / 3)); do sleep 0.05; done
  # The path RTT the connection sees (its standing queue included), from the sender's subflow.
  srtt=$(tb_exec server ss -Htni state established "( sport = :5201 )" |
    grep -o ' rtt:[0-9.]*' | head -1 | cut -d: -f2)
  t0=$(date +%s.%N)
  if [[ $mode == break ]]; then
    tb_link mobile wlan0 down
    proxy_ctl mobile hb handover wlan0 eth1 --break >"$TB_DIR/h_$name.txt" 2>&1
  elif [[ $mode == flip ]]; then
    # Make-before-break to eth1, then at once break-before-make back (eth1 still works).
    proxy_ctl mobile hb handover wlan0 eth1 >"$TB_DIR/h_$name.txt" 2>&1 &&
      proxy_ctl mobile hb handover eth1 wlan0 --break >>"$TB_DIR/h_$name.txt" 2>&1
  elif [[ $mode == overlap ]]; then
    # Both subflows regular for OVERLAP_MS before wlan0 becomes the backup (an experiment: does a
    # head start for the new subflow's congestion window shorten the gap?).
    local tok
    tok=$(proxy_ctl mobile hb -j conn show | python3 -c '
import json, sys; print(json.load(sys.stdin)["connections"][0]["local_token"])')
    proxy_ctl mobile hb subflow add eth1 --conn "$tok" >"$TB_DIR/h_$name.txt" 2>&1
    sleep "$(awk -v m="${OVERLAP_MS:-300}" 'BEGIN { print m / 1000 }')"
    proxy_ctl mobile hb handover wlan0 eth1 >>"$TB_DIR/h_$name.txt" 2>&1
  else
    proxy_ctl mobile hb handover wlan0 eth1 >"$TB_DIR/h_$name.txt" 2>&1
  fi
  rc=$?
  wait "$client"
  peer_wait "s_$name" 300
  local p
  for p in "${caps[@]}"; do tb_stop "$p"; done
  if [[ $pcap == 1 ]]; then
    # The seed's Figure 8: DSN of arriving data and DAN sent, per interface, versus time.
    python3 "$MPROXY_SRC/bench/dss_trace.py" 198.18.1.2,198.18.2.2 "wlan0=$OUT/$name.wlan0.pcap" \
      "eth1=$OUT/$name.eth1.pcap" >"$OUT/$name.dss.csv" 2>/dev/null
  fi
  proxy_ctl mobile hb stats >"$OUT/$name.mobile-stats.txt" 2>&1
  [[ $name == *pp_* ]] && proxy_ctl server hs stats >"$OUT/$name.server-stats.txt" 2>&1
  proxy_stop hb >/dev/null
  [[ $name == *pp_* ]] && proxy_stop hs >/dev/null
  [[ $mode == break ]] && tb_link mobile wlan0 up
  local native=server
  [[ $name == *pp_* ]] && native=""
  if ! check_transfer "c_$name" "s_$name" 1 $native >/dev/null 2>&1; then
    echo "$name: TRANSFER BROKEN ($(check_transfer "c_$name" "s_$name" 1 $native 2>&1 | head -1))"
    return 1
  fi
  [[ $rc == 0 ]] || echo "$name: mproxyctl handover exited $rc: $(cat "$TB_DIR/h_$name.txt")"
  echo "$name: $(losses "$retx0" "$dw0" "$de0")"
  if [[ $mode == break ]]; then
    # The first byte after T0 is often one already in flight; the longest gap around T0 is the
    # stall the break actually caused.
    read -r near far < <(gaps "$OUT/$name.csv.0" "$t0")
    echo "$name: recovery $(recovery "$OUT/$name.csv.0" "$t0") ms after wlan0 went down;" \
      "longest gap around it $near ms (elsewhere $far ms)" \
      "(mproxyctl: $(tr '\n' ' ' <"$TB_DIR/h_$name.txt"))"
  elif [[ $mode == flip ]]; then
    read -r near far < <(gaps "$OUT/$name.csv.0" "$t0")
    echo "$name: wlan0 -> eth1 then eth1 -> wlan0 --break: longest gap $near ms (elsewhere $far ms)" \
      "(mproxyctl: $(tr '\n' ' ' <"$TB_DIR/h_$name.txt"))"
  else
    read -r near far < <(gaps "$OUT/$name.csv.0" "$t0")
    echo "$name: longest gap around the handover $near ms; elsewhere in the transfer $far ms;" \
      "path RTT $RTT_MS ms idle, ${srtt:-?} ms loaded (sender's srtt before the handover)" \
      "(target <= RTT + 10 ms) (mproxyctl: $(tr '\n' ' ' <"$TB_DIR/h_$name.txt"))"
  fi
}

# As in the seed's trials (§5.3): the delay line only, no rate limiter, so nothing but the
# handover itself can open a gap.
echo "mproxy handover bench: ${DELAY_MS} ms delay line, no rate limit, $((SEED_BYTES >> 20)) MiB download"
run seed_mbb make "$SEED_BYTES"
run seed_pp_mbb make "$SEED_BYTES"
# With a bottleneck: the rate limiter's queue (tbf, 50 ms) is where a sender's bursts and slow
# starts lose packets; a loss costs one loaded RTT.
for i in wlan0 eth1; do
  tb_rate mobile "$i" "$RATE"
  tb_rate router "r-$i" "$RATE"
done
echo "mproxy handover bench: ${DELAY_MS} ms delay line and $RATE on each path, $((BYTES >> 20)) MiB download"
run mbb make
run pp_mbb make
[[ " ${MPROXY_BENCH_CASES:-} " == *" overlap_mbb "* ]] && run overlap_mbb overlap
run flip flip
run bbm_sack break
for n in mobile server; do tb_exec "$n" sysctl -qw net.ipv4.tcp_sack=0; done
run bbm_nosack break
echo "traces: received bytes at the application (time_s,bytes): $OUT/*.csv.0;" \
  "DSN/DAN on the mobile host's wire (time_s,iface,kind,offset,len): $OUT/*.dss.csv"
tb_finish >/dev/null
