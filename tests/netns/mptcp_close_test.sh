#!/usr/bin/env bash
# Issue 3, case 6: close semantics between a plain-TCP client behind mproxyd and a native MPTCP
# server. FIN each way (the client first, then the server first, each with a half-closed phase),
# simultaneous close, RST from either side. Afterwards the daemon holds no connection and the
# native side saw a regular close or an MP_FASTCLOSE as expected.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed
MB=$((1024 * 1024))

# run NAME SERVER_ARGS -- CLIENT_ARGS: one connection, then the checks of a regular close.
regular() {
  local name=$1
  shift
  local sargs=() cargs=()
  while [[ $1 != -- ]]; do sargs+=("$1"); shift; done
  shift
  cargs=("$@")
  counter_snapshot server
  peer_server server s$name --proto mptcp "${sargs[@]}"
  peer_client mobile c$name --connect "$TB_SERVER4" "${cargs[@]}"
  peer_wait s$name
  tb_check "$name: data intact both ways, MPTCP on the server" check_transfer c$name s$name 1 server
  expect_delta server MPCapableACKRX 1
  expect_delta server MPFastcloseRx 0
  expect_delta server MPRstRx 0
  tb_check "$name: mproxyd forgets the connection" wait_conns_gone mobile mob 20
}

# The client closes first; the server keeps sending into the half-closed connection for a while.
regular client-first --send $((4 * MB)) --send-delay 1 -- --send $((4 * MB))
# The server closes first.
regular server-first --send $((4 * MB)) -- --send $((4 * MB)) --send-delay 1
# Both close at once (each sends a little and shuts down immediately).
regular simultaneous --send 1000 -- --send 1000
mptcp_assert_zero server

# RST from the local side: the client aborts (SO_LINGER 0) in CLOSE_WAIT; the native server must
# see MP_FASTCLOSE with its own key.
counter_snapshot server
peer_server server srl --proto mptcp --send 0
peer_client mobile crl --connect "$TB_SERVER4" --send $MB --no-fin --reset
peer_wait srl
expect_delta server MPFastcloseRx 1
tb_check "local RST: mproxyd forgets the connection" wait_conns_gone mobile mob 20

# RST from the native side: its MP_FASTCLOSE (our key) reaches the client as a RST.
counter_snapshot server
before=$(proxy_counter mobile mob MpFastcloseRx)
peer_server server srr --proto mptcp --send $MB --no-fin --reset
peer_client mobile crr --connect "$TB_SERVER4" --send 0
peer_wait srr
expect_delta server MPFastcloseTx 1
after=$(proxy_counter mobile mob MpFastcloseRx)
if ((after - before == 1)); then tb_pass "remote RST: proxy honoured the peer's MP_FASTCLOSE"
else tb_fail "remote RST: MpFastcloseRx moved by $((after - before)), expected 1"; fi
tb_check "remote RST: the client saw the reset" grep -q 'reset' "$TB_DIR/crr.json"
tb_check "remote RST: mproxyd forgets the connection" wait_conns_gone mobile mob 20
check_stop mob
tb_finish
