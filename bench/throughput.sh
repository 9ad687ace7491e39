#!/usr/bin/env bash
# Bulk throughput and small-packet rate through mproxyd, as ratios to the same topology without
# the queue, all measured in this run (the machines are shared and noisy: absolute numbers mean
# little, ratios against a baseline taken minutes apart mean more).
#
#   bench/throughput.sh [SECONDS]            (root; builds nothing: run scripts/setup.sh first)
#
# Cases, each upload (mobile -> server) and download (-R):
#   plain            no daemon                                   the baseline
#   passthrough      mproxyd passthrough on both hosts           issue 2: target ratio >= 0.6
#   proxy<->proxy    mproxyd mptcp on both hosts                 issue 3 case 3: target >= 0.5
#   proxy->native    mproxyd mptcp on the mobile host, native MPTCP iperf3 server (mptcpize)
#                                                                issue 3 case 1: target >= 0.5
# and the packets/s of the queue with small segments (iperf3 --set-mss 88).
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
tb_require_root
SECS=${1:-5}
tb_create
mptcp_sysctl server

# iperf_gbps DIR [SERVER_WRAPPER]: one iperf3 run, prints Gbit/s received.
iperf_gbps() {
  local dir=$1 wrap=${2:-}
  local args=()
  [[ $dir == down ]] && args+=(-R)
  # shellcheck disable=SC2086
  tb_bg server "$TB_DIR/iperf-s.log" $wrap iperf3 -s -1 -p 5201 >/dev/null
  local spid=$TB_BG_PID
  tb_wait_port server 5201 10 >/dev/null || { echo 0; return; }
  tb_exec mobile iperf3 -c "$TB_SERVER4" -p 5201 -t "$SECS" -J "${args[@]}" >"$TB_DIR/iperf-c.json" 2>&1
  wait "$spid" 2>/dev/null
  python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    print(0)' "$TB_DIR/iperf-c.json"
}

# small_pps: packets/s the mobile daemon's queue handled with 88-byte MSS segments, or the
# packets/s seen on wlan0 when no daemon runs.
small_pps() {
  local with_daemon=$1 before after
  if [[ $with_daemon == yes ]]; then before=$(proxy_counter mobile mob NfqReceived)
  else before=$(tb_counter mobile wlan0 tx packets); fi
  tb_bg server "$TB_DIR/iperf-s.log" iperf3 -s -1 -p 5201 >/dev/null
  local spid=$TB_BG_PID
  tb_wait_port server 5201 10 >/dev/null
  tb_exec mobile iperf3 -c "$TB_SERVER4" -p 5201 -t "$SECS" -M 88 >/dev/null 2>&1
  wait "$spid" 2>/dev/null
  if [[ $with_daemon == yes ]]; then after=$(proxy_counter mobile mob NfqReceived)
  else after=$(tb_counter mobile wlan0 tx packets); fi
  echo $(((after - before) / SECS))
}

ratio() { python3 -c 'import sys; b=float(sys.argv[1]); print("%.2f" % (float(sys.argv[2]) / b if b else 0))' "$1" "$2"; }

declare -A R
R[plain/up]=$(iperf_gbps up)
R[plain/down]=$(iperf_gbps down)
PPS_PLAIN=$(small_pps no)

proxy_start mobile mob --engine passthrough --ports 5201 >/dev/null
proxy_start server srv --engine passthrough --ports 5201 >/dev/null
R[passthrough/up]=$(iperf_gbps up)
R[passthrough/down]=$(iperf_gbps down)
PPS_QUEUE=$(small_pps yes)
proxy_stop mob
proxy_stop srv

proxy_start mobile mob --engine mptcp --ports 5201 --fail-policy closed >/dev/null
proxy_start server srv --engine mptcp --ports 5201 --fail-policy closed >/dev/null
R[proxy-proxy/up]=$(iperf_gbps up)
R[proxy-proxy/down]=$(iperf_gbps down)
CONV_PP=$(proxy_counter mobile mob MpConverted)
proxy_stop srv
counter_snapshot server
R[proxy-native/up]=$(iperf_gbps up "mptcpize run")
R[proxy-native/down]=$(iperf_gbps down "mptcpize run")
NATIVE_ACK=$(( $(mptcp_counter server MPCapableACKRX) - ${_SNAP[server/MPCapableACKRX]:-0} ))
proxy_stop mob

echo
echo "mproxy throughput, ${SECS}s per run, 2-core machine, veth + router namespace, GSO/TSO on"
printf '%-14s %10s %8s %10s %8s\n' case "up Gb/s" ratio "down Gb/s" ratio
for c in plain passthrough proxy-proxy proxy-native; do
  printf '%-14s %10s %8s %10s %8s\n' "$c" "${R[$c/up]}" "$(ratio "${R[plain/up]}" "${R[$c/up]}")" \
    "${R[$c/down]}" "$(ratio "${R[plain/down]}" "${R[$c/down]}")"
done
echo "small segments (MSS 88): ${PPS_PLAIN} pkt/s without the queue, ${PPS_QUEUE} pkt/s through it (ratio $(ratio "$PPS_PLAIN" "$PPS_QUEUE"))"
echo "proof of conversion: proxy<->proxy connections converted by the mobile daemon: $CONV_PP;" \
  "native server MPCapableACKRX during proxy->native runs: $NATIVE_ACK (iperf3 uses 2 connections per run)"
tb_finish >/dev/null
