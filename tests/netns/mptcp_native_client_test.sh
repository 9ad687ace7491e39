#!/usr/bin/env bash
# Issue 3, case 2: a native Linux MPTCP client (socket protocol 262) connects to a plain-TCP
# server on the mobile host, whose mproxyd answers as an MPTCP server (passive role).
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin --v6

SIZE=${MPROXY_TEST_BYTES:-$((256 * 1024 * 1024))}
proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed
MOB4=$(tb_addr mobile wlan0 4)
MOB6=$(tb_addr mobile wlan0 6)

for fam in 4 6; do
  addr=$MOB4
  [[ $fam == 6 ]] && addr=$MOB6
  counter_snapshot server
  peer_server mobile s$fam --proto tcp --family $fam --send "$SIZE"
  peer_client server c$fam --proto mptcp --family $fam --connect "$addr" --send "$SIZE"
  peer_wait s$fam
  tb_check "IPv$fam: $SIZE bytes each way intact; client MPTCP_INFO: MPTCP, no fallback" \
    check_transfer c$fam s$fam 1 client
  expect_delta server MPCapableSYNTX 1
  expect_delta server MPCapableSYNACKRX 1
  mptcp_assert_zero server
done

check_stop mob
tb_finish
