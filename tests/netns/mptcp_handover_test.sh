#!/usr/bin/env bash
# Issue 4, case 2 (PROXY <-> native Linux MPTCP): a plain-TCP client on the mobile host behind
# mproxyd, a native MPTCP server that accepts joins (`ip mptcp limits set subflows 2
# add_addr_accepted 2`). Mid-transfer `mproxyctl handover wlan0 eth1` opens an MP_JOIN subflow from
# eth1 and moves sending there (make-before-break, seed §5.3); later the handover goes back. The
# stream must stay exact both ways, and the native side's own counters must prove the join
# (MPJoinSynRx = MPJoinAckRx), MP_PRIO (MPPrioRx) and no failure (assert-zero set), while the
# interface counters show the bytes moving to eth1.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2

# Paths of 200 Mbit/s each way, so the transfer lasts long enough to hand over in its middle.
RATE=${MPROXY_HANDOVER_RATE:-200mbit}
for i in wlan0 eth1; do tb_rate mobile "$i" "$RATE"; tb_rate router "r-$i" "$RATE"; done
SIZE=${MPROXY_TEST_BYTES:-$((96 * 1024 * 1024))}

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1


for dir in down up; do
  counter_snapshot server
  # The side that sends little does not half-close until the end: Linux refuses joins to a
  # connection whose peer has sent its DATA_FIN (MPJoinRejected), so a handover needs both
  # directions open.
  if [[ $dir == down ]]; then
    srv_args=(--send "$SIZE") cli_args=(--send $((1024 * 1024)) --no-fin)
  else
    srv_args=(--send $((1024 * 1024)) --no-fin) cli_args=(--send "$SIZE")
  fi
  peer_server server s_$dir --proto mptcp "${srv_args[@]}"
  peer_client mobile c_$dir --connect "$TB_SERVER4" "${cli_args[@]}" &
  client=$!
  wait_conn_bytes mobile mob $((16 * 1024 * 1024)) || tb_fail "$dir: the transfer did not start"
  w0=$(if_bytes mobile wlan0) e0=$(if_bytes mobile eth1)
  out=$(proxy_ctl mobile mob handover wlan0 eth1 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$dir: handover wlan0 -> eth1 completed: $out"
  else tb_fail "$dir: handover wlan0 -> eth1 (exit $rc): $out"; fi
  proxy_ctl mobile mob conn show | sed 's/^/    /' >&2
  sleep 1.5
  w1=$(if_bytes mobile wlan0) e1=$(if_bytes mobile eth1)
  out=$(proxy_ctl mobile mob handover eth1 wlan0 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$dir: handover eth1 -> wlan0 completed: $out"
  else tb_fail "$dir: handover eth1 -> wlan0 (exit $rc): $out"; fi
  wait "$client"
  peer_wait s_$dir
  tb_check "$dir: $SIZE bytes intact across two handovers; server MPTCP_INFO: MPTCP, no fallback" \
    check_transfer c_$dir s_$dir 1 server
  tb_check "$dir: the server saw one extra subflow (MPTCP_INFO subflows = 1)" \
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if r["mptcp"]["subflows"] >= 1 else 1)' \
    "$TB_DIR/s_$dir.json"
  # After the handover almost all bytes travel on eth1 (seed §5.3): at least 90% of the bytes the
  # two interfaces carried in the 1.5 s after it.
  dw=$((w1 - w0)) de=$((e1 - e0))
  if ((de * 10 >= (dw + de) * 9 && de > 1000000)); then
    tb_pass "$dir: after the handover eth1 carried $de bytes, wlan0 $dw"
  else
    tb_fail "$dir: after the handover eth1 carried $de bytes, wlan0 $dw (want >= 90% on eth1)"
  fi
  expect_delta server MPCapableACKRX 1
  expect_delta server MPJoinSynRx 1
  expect_delta server MPJoinAckRx 1
  now=$(mptcp_counter server MPPrioRx)
  if ((now - ${_SNAP[server/MPPrioRx]:-0} >= 2)); then tb_pass "$dir: server MPPrioRx moved (both handovers)"
  else tb_fail "$dir: server MPPrioRx moved by $((now - ${_SNAP[server/MPPrioRx]:-0})), expected >= 2"; fi
  mptcp_assert_zero server
  # The next phase's handover must find only its own connection.
  wait_conns_gone mobile mob 30 || tb_fail "$dir: the connection was not freed after its close"
done

check_stop mob
tb_check "no mproxy chain left in the mobile namespace" \
  bash -c "! ip netns exec $(tb_ns mobile) iptables-save | grep -qi mpx"
# The daemon's rules and tables start at 0x4d50 = 19792 (mproxyd --rule-priority-base/--route-table-base).
tb_check "no policy-routing rule or table of mproxy left in the mobile namespace" \
  bash -c "! ip -n $(tb_ns mobile) rule show | grep -Eq '^1979[2-9]:|lookup 1979[2-9]' &&
           ! ip -n $(tb_ns mobile) route show table all | grep -Eq 'table 1979[2-9]'"
tb_finish
