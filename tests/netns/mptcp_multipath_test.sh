#!/usr/bin/env bash
# Issue 4, case 4 (PROXY <-> native Linux MPTCP, multipath reception): a plain-TCP client on the
# mobile host behind mproxyd downloads from a native MPTCP server; mid-transfer `mproxyctl subflow
# add eth1 --conn TOKEN` (not backup) opens a second regular subflow, and Linux then schedules data
# on both subflows at once. The engine maps each subflow's bytes through its own RECV table into
# the one TCP stream (seed §3.3), and acknowledges each subflow for what arrived on it
# (mptcp/DESIGN.md "Subflow ACKs"). The stream must stay exact (sha256), the native side's counters
# must prove the join (MPJoinSynRx = MPJoinAckRx) and no failure (assert-zero set), MPTCP_INFO
# must show the extra subflow, and both interfaces must carry a substantial share of the bytes.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2

# Two paths of 100 Mbit/s with a little delay: one path alone cannot take what the server can
# send, so its scheduler uses both once the second subflow exists.
RATE=${MPROXY_MULTIPATH_RATE:-100mbit}
for i in wlan0 eth1; do
  tb_rate mobile "$i" "$RATE"
  tb_rate router "r-$i" "$RATE"
  tb_delay router "r-$i" 10
done
SIZE=${MPROXY_TEST_BYTES:-$((96 * 1024 * 1024))}

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1

conn_field() {  # conn_field FIELD: a field of the daemon's only connection ("" while none)
  proxy_ctl mobile mob -j conn show 2>/dev/null | python3 -c '
import json, sys
c = [c for c in json.load(sys.stdin).get("connections", []) if c["state"] == "established"]
print(c[0][sys.argv[1]] if c else "")' "$1" 2>/dev/null
}
wait_bytes() {  # wait until the connection received $1 bytes
  local i b
  for i in $(seq 600); do
    b=$(conn_field bytes_rx)
    [[ -n "$b" ]] && ((b >= $1)) && return 0
    sleep 0.05
  done
  return 1
}
ifbytes() { echo $(($(tb_counter mobile "$1" rx bytes) + $(tb_counter mobile "$1" tx bytes))); }

counter_snapshot server
peer_server server s_mp --proto mptcp --send "$SIZE"
# --no-fin: Linux refuses joins once the peer half-closed (MPJoinRejected).
peer_client mobile c_mp --connect "$TB_SERVER4" --send $((1024 * 1024)) --no-fin &
client=$!
wait_bytes $((16 * 1024 * 1024)) || tb_fail "the transfer did not start"
token=$(conn_field local_token)
w0=$(ifbytes wlan0) e0=$(ifbytes eth1)
out=$(proxy_ctl mobile mob subflow add eth1 --conn "$token" 2>&1)
rc=$?
if [[ $rc == 0 ]]; then tb_pass "subflow add eth1 --conn $token: $out"
else tb_fail "subflow add eth1 --conn $token (exit $rc): $out"; fi
sleep 2
w1=$(ifbytes wlan0) e1=$(ifbytes eth1)
proxy_ctl mobile mob conn show | sed 's/^/    /' >&2
wait "$client"
peer_wait s_mp
tb_check "$SIZE bytes intact while both subflows carried data; server MPTCP_INFO: MPTCP, no fallback" \
  check_transfer c_mp s_mp 1 server
tb_check "the server saw one extra subflow (MPTCP_INFO subflows = 1)" \
  python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if r["mptcp"]["subflows"] == 1 else 1)' \
  "$TB_DIR/s_mp.json"
# Both paths in use: each interface carried at least 20% of the bytes of the 2 s after the add.
dw=$((w1 - w0)) de=$((e1 - e0))
if ((dw * 5 >= dw + de && de * 5 >= dw + de && de > 1000000 && dw > 1000000)); then
  tb_pass "with two regular subflows wlan0 carried $dw bytes, eth1 $de"
else
  tb_fail "with two regular subflows wlan0 carried $dw bytes, eth1 $de (want >= 20% each)"
fi
expect_delta server MPCapableACKRX 1
expect_delta server MPJoinSynRx 1
expect_delta server MPJoinAckRx 1
mptcp_assert_zero server
for c in MpMappingConflict MpSpansMappings MpCsumBad; do
  v=$(proxy_counter mobile mob "$c")
  if [[ "$v" == 0 ]]; then tb_pass "mproxyd $c = 0"; else tb_fail "mproxyd $c = $v"; fi
done

check_stop mob
tb_check "no mproxy chain left in the mobile namespace" \
  bash -c "! ip netns exec $(tb_ns mobile) iptables-save | grep -qi mpx"
tb_finish
