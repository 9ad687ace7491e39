#!/usr/bin/env bash
# Issue 3, cases 1, 4, 5 and 7: a plain-TCP client on the mobile host, mproxyd converting its
# connections, a native Linux MPTCP server. A native listener silently accepts plain TCP, so every
# case asserts the server's MPTcpExt counters and MPTCP_INFO, not just the data.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin --v6

SIZE=${MPROXY_TEST_BYTES:-$((256 * 1024 * 1024))}
proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed

# Case 1: 256 MiB each direction over IPv4 through the proxy into a native MPTCP server.
counter_snapshot server
peer_server server s1 --proto mptcp --send "$SIZE"
peer_client mobile c1 --connect "$TB_SERVER4" --send "$SIZE"
peer_wait s1
tb_check "IPv4: $SIZE bytes each way intact; server MPTCP_INFO: MPTCP, no fallback" \
  check_transfer c1 s1 1 server
expect_delta server MPCapableSYNRX 1
expect_delta server MPCapableACKRX 1
mptcp_assert_zero server

# Case 7: the same over IPv6.
counter_snapshot server
peer_server server s6 --proto mptcp --family 6 --send "$SIZE"
peer_client mobile c6 --family 6 --connect "$TB_SERVER6" --send "$SIZE"
peer_wait s6
tb_check "IPv6: $SIZE bytes each way intact; server MPTCP_INFO: MPTCP, no fallback" \
  check_transfer c6 s6 1 server
expect_delta server MPCapableSYNRX 1
expect_delta server MPCapableACKRX 1
mptcp_assert_zero server

# Case 7: 100 concurrent connections.
counter_snapshot server
peer_server server s100 --proto mptcp --conns 100 --send $((2 * 1024 * 1024))
peer_client mobile c100 --conns 100 --connect "$TB_SERVER4" --send $((2 * 1024 * 1024))
peer_wait s100
tb_check "100 concurrent connections intact, all MPTCP on the server" check_transfer c100 s100 100 server
expect_delta server MPCapableSYNRX 100
expect_delta server MPCapableACKRX 100
mptcp_assert_zero server

# Case 4: the server asks for DSS checksums (flag A in its SYN/ACK).
tb_exec server sysctl -qw net.mptcp.checksum_enabled=1
counter_snapshot server
peer_server server sc --proto mptcp --send $((32 * 1024 * 1024))
peer_client mobile cc --connect "$TB_SERVER4" --send $((32 * 1024 * 1024))
peer_wait sc
tb_check "checksums: transfer intact, MPTCP on the server" check_transfer cc sc 1 server
tb_check "checksums: the server's MPTCP_INFO says checksums are on" \
  python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if r["mptcp"]["csum_enabled"] else 1)' \
  "$TB_DIR/sc.json"
expect_delta server MPCapableSYNRX 1
expect_delta server DataCsumErr 0
mptcp_assert_zero server
tb_exec server sysctl -qw net.mptcp.checksum_enabled=0

# Case 5: a plain-TCP server (no MPTCP, no proxy): the connection works unchanged and the proxy
# counts a fallback.
before=$(proxy_counter mobile mob MpFallbackNoMpcSynAck)
peer_server server sp --proto tcp --send $((8 * 1024 * 1024))
peer_client mobile cp --connect "$TB_SERVER4" --send $((8 * 1024 * 1024))
peer_wait sp
tb_check "plain-TCP peer: transfer intact" check_transfer cp sp 1
after=$(proxy_counter mobile mob MpFallbackNoMpcSynAck)
if [[ $((after - before)) == 1 ]]; then tb_pass "proxy counted one fallback (no MP_CAPABLE in SYN/ACK)"
else tb_fail "MpFallbackNoMpcSynAck moved by $((after - before)), expected 1"; fi

check_stop mob
tb_check "no mproxy chain left in the mobile namespace" \
  bash -c "! ip netns exec $(tb_ns mobile) iptables-save | grep -qi mpx"
tb_finish
