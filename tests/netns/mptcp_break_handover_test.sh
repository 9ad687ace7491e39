#!/usr/bin/env bash
# Issue 4, case 3 (break-before-make, seed §5.4): a plain-TCP client on the mobile host behind
# mproxyd downloads from a native Linux MPTCP server; mid-transfer wlan0 goes down and
# `mproxyctl handover wlan0 eth1 --break` moves the connection to a new subflow on eth1, with
# REMOVE_ADDR for wlan0's address; what was in flight on wlan0 is retransmitted on eth1. Run with
# and without SACK. The stream must stay exact, the native side must count the join and the
# REMOVE_ADDR and nothing of the assert-zero set, and its MPTCP_INFO must show no fallback.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2
RATE=${MPROXY_HANDOVER_RATE:-200mbit}
for i in wlan0 eth1; do
  tb_rate mobile "$i" "$RATE"
  tb_rate router "r-$i" "$RATE"
  tb_delay router "r-$i" 10
done
SIZE=${MPROXY_TEST_BYTES:-$((64 * 1024 * 1024))}

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1


for sack in 1 0; do
  name=$([[ $sack == 1 ]] && echo sack || echo nosack)
  for n in mobile server; do tb_exec "$n" sysctl -qw net.ipv4.tcp_sack=$sack; done
  counter_snapshot server
  peer_server server "s_$name" --proto mptcp --send "$SIZE"
  # --no-fin: Linux refuses joins once the other side half-closed the connection.
  peer_client mobile "c_$name" --connect "$TB_SERVER4" --send $((256 * 1024)) --no-fin &
  client=$!
  for _ in $(seq 600); do (($(conn_sum mobile mob bytes_rx) >= SIZE / 4)) && break; sleep 0.05; done
  tb_link mobile wlan0 down
  out=$(proxy_ctl mobile mob handover wlan0 eth1 --break 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$name: handover wlan0 -> eth1 --break with wlan0 down: $out"
  else tb_fail "$name: handover wlan0 -> eth1 --break (exit $rc): $out"; fi
  wait "$client"
  peer_wait "s_$name" 120
  tb_check "$name: $SIZE bytes intact across the break; server MPTCP_INFO: MPTCP, no fallback" \
    check_transfer "c_$name" "s_$name" 1 server
  expect_delta server MPJoinSynRx 1
  expect_delta server MPJoinAckRx 1
  rm_now=$(mptcp_counter server RmAddr)
  if ((rm_now - ${_SNAP[server/RmAddr]:-0} >= 1)); then tb_pass "$name: server received REMOVE_ADDR"
  else tb_fail "$name: server RmAddr did not move"; fi
  mptcp_assert_zero server
  tb_link mobile wlan0 up
  wait_conns_gone mobile mob 30 || tb_fail "$name: the connection was not freed after its close"
done

check_stop mob
tb_check "no mproxy chain left in the mobile namespace" \
  bash -c "! ip netns exec $(tb_ns mobile) iptables-save | grep -qi mpx"
tb_finish
