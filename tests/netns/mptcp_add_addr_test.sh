#!/usr/bin/env bash
# ADD_ADDR from a native Linux peer (RFC 8684 §3.4.1, interop §1.5): the server announces a second
# address (`ip mptcp endpoint add ADDR dev IF signal`) to a plain-TCP client behind mproxyd. The
# engine must echo it (E=1, no HMAC, next to a DSS DATA_ACK), which Linux counts as EchoAdd and
# which stops its retransmissions (net.mptcp.add_addr_timeout is 2 s in tests); the stream stays
# exact both ways and nothing in the assert-zero set moves.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2
tb_exec server ip addr add 198.18.3.3/24 dev eth0
tb_exec server ip mptcp endpoint add 198.18.3.3 dev eth0 signal

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1

counter_snapshot server
SIZE=$((8 * 1024 * 1024))
# Both sides wait 4 s before sending: the connection stays open past two add_addr_timeouts, so a
# missing echo would show as a retransmitted ADD_ADDR.
peer_server server s_aa --proto mptcp --send "$SIZE" --send-delay 4
peer_client mobile c_aa --connect "$TB_SERVER4" --send "$SIZE" --send-delay 4 &
client=$!
wait "$client"
peer_wait s_aa
tb_check "$SIZE bytes intact both ways; server MPTCP_INFO: MPTCP, no fallback" \
  check_transfer c_aa s_aa 1 server
tx=$(( $(mptcp_counter server AddAddrTx) - ${_SNAP[server/AddAddrTx]:-0} ))
echo_rx=$(( $(mptcp_counter server EchoAdd) - ${_SNAP[server/EchoAdd]:-0} ))
if ((tx == 1)); then tb_pass "server announced its address once (MPTcpExtAddAddrTx +1: echoed in time)"
else tb_fail "server MPTcpExtAddAddrTx moved by $tx, expected 1 (no echo -> retransmissions)"; fi
if ((echo_rx == 1)); then tb_pass "server received the echo (MPTcpExtEchoAdd +1)"
else tb_fail "server MPTcpExtEchoAdd moved by $echo_rx, expected 1"; fi
for c in MpAddAddrRx MpAddAddrEchoTx; do
  v=$(proxy_counter mobile mob "$c")
  if ((v >= 1)); then tb_pass "mproxyd $c = $v"; else tb_fail "mproxyd $c = $v, expected >= 1"; fi
done
v=$(proxy_counter mobile mob MpAddAddrBadHmac)
if [[ "$v" == 0 ]]; then tb_pass "mproxyd MpAddAddrBadHmac = 0"; else tb_fail "mproxyd MpAddAddrBadHmac = $v"; fi
mptcp_assert_zero server

check_stop mob
tb_finish
