#!/usr/bin/env bash
# Issue 3, case 3 (and 7 for IPv6): mproxyd on both ends, plain-TCP applications on both. The wire
# between them must be valid MPTCP v1: a capture at the router passes tshark's MPTCP analysis with
# no missing mapping, no key mismatch, no infinite mapping, no MP_FAIL/MP_TCPRST
# (interop reference §5).
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
tb_require_root
tb_create --v6

SIZE=${MPROXY_TEST_BYTES:-$((256 * 1024 * 1024))}
for n in mobile server; do
  proxy_start "$n" "$n" --engine mptcp --ports 5201 --fail-policy closed || {
    tb_fail "mproxyd starts on $n"
    tb_finish
  }
done

# Headers only (snaplen 200 is enough for the options, interop §5), on the router's server side.
cap=$TB_DIR/wire.pcap
capture_pid=$(tb_bg router "$TB_DIR/tcpdump.log" tcpdump -i r-srv -s 200 -U -w "$cap" tcp port 5201)
sleep 1

for fam in 4 6; do
  dest=$TB_SERVER4
  [[ $fam == 6 ]] && dest=$TB_SERVER6
  peer_server server s$fam --proto tcp --family $fam --send "$SIZE"
  peer_client mobile c$fam --proto tcp --family $fam --connect "$dest" --send "$SIZE"
  peer_wait s$fam
  tb_check "IPv$fam PROXY<->PROXY: $SIZE bytes each way intact" check_transfer c$fam s$fam 1
done
for n in mobile server; do
  v=$(proxy_counter "$n" "$n" MpConverted)
  if [[ $v == 2 ]]; then tb_pass "$n: both connections converted"
  else tb_fail "$n: MpConverted=$v, expected 2"; fi
done
sleep 1
kill -INT "$capture_pid" 2>/dev/null
sleep 1

P="-n -o tcp.analyze_sequence_numbers:TRUE -o mptcp.analyze_mptcp:TRUE -o mptcp.relative_sequence_numbers:TRUE -o mptcp.analyze_mappings:TRUE -o mptcp.intersubflows_retransmission:TRUE"
# shellcheck disable=SC2086
mpc=$(tshark -r "$cap" $P -Y 'tcp.options.mptcp.subtype == 0' 2>/dev/null | wc -l)
if ((mpc >= 6)); then tb_pass "capture holds the MP_CAPABLE handshakes ($mpc packets)"
else tb_fail "capture holds $mpc MP_CAPABLE packets, expected >= 6"; fi
# shellcheck disable=SC2086
bad=$(tshark -r "$cap" $P -Y '(mptcp.dss.missing_mapping && tcp.len > 0) || mptcp.dss.infinite_mapping ||
   mptcp.connection.echoed_key_mismatch || mptcp.connection.missing_algorithm ||
   mptcp.connection.unsupported_algorithm || tcp.options.mptcp.subtype == 6 ||
   tcp.options.mptcp.subtype == 8 || (mptcp && tcp.flags.reset == 1)' 2>&1 | head -20)
if [[ -z "$bad" ]]; then tb_pass "tshark MPTCP analysis: no missing mapping, key mismatch, fallback or reset"
else tb_fail "tshark MPTCP analysis flagged packets:
$bad"; fi

for n in mobile server; do check_stop "$n"; done
tb_finish
