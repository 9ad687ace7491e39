#!/usr/bin/env bash
# The demo on the built-in namespaced testbed (run as root on Debian 12):
#   mobile host (wlan0, eth1) -- router -- server
# A plain-TCP client on the mobile host downloads from a *native Linux MPTCP* server; mproxyd on
# the mobile host converts the connection to MPTCP v1 on the wire. Mid-transfer
# `mproxyctl handover wlan0 eth1` opens an MP_JOIN subflow from eth1 and moves the connection there
# (make-before-break, seed §5.3). The demo shows the daemon's view, the measured gap in the received
# data around the handover, the bytes per interface before and after, the native server's own
# counters proving MPTCP and the join, and the clean stop. Everything lives in throw-away
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
set +e
MPROXY_SRC=$PWD
MPROXY_BUILD=$PWD/build
source tests/testbed/testbed.sh
source tests/netns/lib.sh
tb_require_root
BYTES=${MPROXY_DEMO_BYTES:-$((96 * 1024 * 1024))}
RATE=${MPROXY_DEMO_RATE:-100mbit}
DELAY_MS=${MPROXY_DEMO_DELAY_MS:-15}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ifbytes() { echo $(($(tb_counter mobile "$1" rx bytes) + $(tb_counter mobile "$1" tx bytes))); }
show_ifaces() {
  awk -v w="$(ifbytes wlan0)" -v e="$(ifbytes eth1)" \
    'BEGIN { printf "  bytes so far: wlan0 %6.1f MiB   eth1 %6.1f MiB\n", w / 1048576, e / 1048576 }'
}
rx_bytes() {
  proxy_ctl mobile demo -j conn show 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin).get("connections", [])
print(c[0]["bytes_rx"] if c else 0)' 2>/dev/null || echo 0
}

step "Testbed: mobile (wlan0 198.18.1.2, eth1 198.18.2.2) -- router -- server 198.18.3.2; $RATE and $DELAY_MS ms each way on each path"
tb_create >/dev/null
mptcp_sysctl server
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2
for i in wlan0 eth1; do
  tb_rate mobile "$i" "$RATE"; tb_rate router "r-$i" "$RATE"
  tb_delay mobile "$i" "$DELAY_MS"; tb_delay router "r-$i" "$DELAY_MS"
done
echo "namespaces: $(tb_ns mobile) $(tb_ns router) $(tb_ns server)"
RTT=$(tb_ping_stats mobile "$TB_SERVER4" -c 5 -i 0.2 | awk '{print $3}')
echo "path RTT: $RTT ms"

step "mproxyd on the mobile host: --engine mptcp --ports 5201 --interfaces wlan0,eth1"
proxy_start mobile demo --engine mptcp --ports 5201 --fail-policy closed --interfaces wlan0,eth1 || exit 1
proxy_ctl mobile demo status

step "Native MPTCP server (socket protocol 262) sends $((BYTES >> 20)) MiB to a plain TCP client behind mproxyd"
peer_server server srv --proto mptcp --send "$BYTES" || exit 1
# --no-fin: the client keeps its direction open until the end (Linux refuses joins to a
# connection whose peer has half-closed it).
tb_exec mobile python3 "$PEER" client --connect "$TB_SERVER4" --send $((1024 * 1024)) --no-fin \
  --trace "$TB_DIR/trace" >"$TB_DIR/cli.json" &
client=$!
while (($(rx_bytes) < BYTES / 3)); do sleep 0.2; kill -0 $client 2>/dev/null || break; done
proxy_ctl mobile demo conn show | sed 's/^/  /'
show_ifaces
w0=$(ifbytes wlan0) e0=$(ifbytes eth1)

step "mproxyctl handover wlan0 eth1   (make-before-break)"
t0=$(date +%s.%N)
proxy_ctl mobile demo handover wlan0 eth1 | sed 's/^/  /'
proxy_ctl mobile demo conn show | sed 's/^/  /'
wait "$client"
peer_wait srv
show_ifaces
w1=$(ifbytes wlan0) e1=$(ifbytes eth1)

step "Result"
if check_transfer cli srv 1 server; then
  echo "both directions intact (sha256 equal at both ends)"
else
  echo "TRANSFER FAILED"
fi
python3 - "$TB_DIR/trace.0" "$t0" "$RTT" <<'EOF'
import sys
rows = [tuple(map(float, l.split(","))) for l in open(sys.argv[1]).read().split("\n")[1:] if l]
t0, rtt = float(sys.argv[2]), float(sys.argv[3])
near = max(((b[0] - a[0]) * 1000 for a, b in zip(rows, rows[1:]) if t0 - 1 <= a[0] <= t0 + 1), default=0)
print("longest gap in the received data within 1 s of the handover: %.1f ms (path RTT %.1f ms)" % (near, rtt))
EOF
echo "after the handover: eth1 carried $(((e1 - e0) >> 20)) MiB, wlan0 $(((w1 - w0) >> 20)) MiB"
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
m = r["mptcp"]
print("server MPTCP_INFO: fallback=%s extra subflows=%d token=%08x" % (m["fallback"], m["subflows"], m["token"]))
' "$TB_DIR/srv.json"
echo "server MPTcpExt: MPCapableACKRX=$(mptcp_counter server MPCapableACKRX) MPJoinSynRx=$(mptcp_counter server MPJoinSynRx) MPJoinAckRx=$(mptcp_counter server MPJoinAckRx) MPPrioRx=$(mptcp_counter server MPPrioRx) MPJoinAckHMacFailure=$(mptcp_counter server MPJoinAckHMacFailure) DssFallback=$(mptcp_counter server DssFallback)"

step "mproxyctl stats (engine counters that moved)"
proxy_ctl mobile demo stats | grep -E '^  (Mp|Nfq)' | grep -v ' 0$'

step "Clean stop (SIGTERM): rules and routes removed"
proxy_stop demo && echo "mproxyd exited 0"
tb_exec mobile iptables-save | grep -c MPXDEMO | sed 's/^/iptables chains or rules left: /'
tb_cleanup
