#!/usr/bin/env bash
# Bulk throughput and small-packet rate through mproxyd, as ratios to the same topology without
# the queue, all measured in this run (the machines are shared and noisy: absolute numbers mean
# little, ratios against a baseline taken minutes apart mean more).
#
#   bench/throughput.sh [SECONDS] [ROUNDS]   (root; builds nothing: run scripts/setup.sh first)
#
# Every measured run is paired with a plain run just before it and its ratio is taken against that
# one (load on a shared machine drifts within a minute: one baseline for the whole bench measured
# 0.5 where paired runs measured 0.7). Each case runs ROUNDS times; the median ratio is reported.
#
# Cases, each upload (mobile -> server) and download (-R):
#   plain            no daemon                                   the baseline
#   passthrough      mproxyd passthrough on both hosts           issue 2: target ratio >= 0.6
#                    (every packet parsed and re-emitted, the re-emit verified, the original
#                    accepted: nothing goes back to the kernel for an unchanged packet)
#   rewrite          mproxyd passthrough-rewrite on both hosts: every re-emit goes back in the
#                    verdict, the cost of a rewritten packet (for comparison, no target)
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
ROUNDS=${2:-3}
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
median() { python3 -c 'import sys, statistics; print("%.2f" % statistics.median(map(float, sys.argv[1:])))' "$@"; }

# start_case CASE / stop_case CASE: the daemons of each case.
start_case() {
  case $1 in
    passthrough|rewrite)
      local e=passthrough; [[ $1 == rewrite ]] && e=passthrough-rewrite
      proxy_start mobile mob --engine $e --ports 5201 >/dev/null
      proxy_start server srv --engine $e --ports 5201 >/dev/null ;;
    proxy-proxy)
      proxy_start mobile mob --engine mptcp --ports 5201 --fail-policy closed >/dev/null
      proxy_start server srv --engine mptcp --ports 5201 --fail-policy closed >/dev/null ;;
    proxy-native)
      proxy_start mobile mob --engine mptcp --ports 5201 --fail-policy closed >/dev/null ;;
  esac
}
stop_case() {
  case $1 in
    proxy-proxy)
      CONV_PP=$((CONV_PP + $(proxy_counter mobile mob MpConverted)))
      KEPT_PP=$((KEPT_PP + $(proxy_counter mobile mob MpInboundKeptDss))) ;;
  esac
  proxy_stop mob >/dev/null
  [[ $1 != proxy-native ]] && proxy_stop srv >/dev/null
  return 0
}

CASES=(passthrough rewrite proxy-proxy proxy-native)
declare -A G RAT
CONV_PP=0 KEPT_PP=0
counter_snapshot server
for round in $(seq "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    for dir in up down; do
      base=$(iperf_gbps $dir)
      start_case $c
      wrap=; [[ $c == proxy-native ]] && wrap="mptcpize run"
      got=$(iperf_gbps $dir "$wrap")
      stop_case $c
      G[$c/$dir]+="$got "
      G[plain/$dir]+="$base "
      RAT[$c/$dir]+="$(ratio "$base" "$got") "
      echo "round $round $c $dir: plain $base, $c $got Gb/s" >&2
    done
  done
done
NATIVE_ACK=$(( $(mptcp_counter server MPCapableACKRX) - ${_SNAP[server/MPCapableACKRX]:-0} ))

PPS_PLAIN=$(small_pps no)
proxy_start mobile mob --engine passthrough --ports 5201 >/dev/null
proxy_start server srv --engine passthrough --ports 5201 >/dev/null
PPS_QUEUE=$(small_pps yes)
proxy_stop mob >/dev/null
proxy_stop srv >/dev/null

echo
echo "mproxy throughput: 2-core machine, veth + router namespace, GSO/TSO on, iperf3 ${SECS}s,"
echo "each run paired with a plain run just before it; medians of $ROUNDS rounds"
printf '%-14s %10s %8s %10s %8s\n' case "up Gb/s" ratio "down Gb/s" ratio
# shellcheck disable=SC2086
printf '%-14s %10s %8s %10s %8s\n' plain "$(median ${G[plain/up]})" 1.00 "$(median ${G[plain/down]})" 1.00
for c in "${CASES[@]}"; do
  # shellcheck disable=SC2086
  printf '%-14s %10s %8s %10s %8s\n' "$c" "$(median ${G[$c/up]})" "$(median ${RAT[$c/up]})" \
    "$(median ${G[$c/down]})" "$(median ${RAT[$c/down]})"
done
echo "small segments (MSS 88), passthrough: ${PPS_PLAIN} pkt/s without the queue, ${PPS_QUEUE} pkt/s through it (ratio $(ratio "$PPS_PLAIN" "$PPS_QUEUE"))"
echo "proof of conversion: proxy<->proxy connections converted by the mobile daemon: $CONV_PP," \
  "inbound segments left as they were (translation a no-op): $KEPT_PP;" \
  "native server MPCapableACKRX during proxy->native runs: $NATIVE_ACK (iperf3 opens 2 connections per run)"
tb_finish >/dev/null
