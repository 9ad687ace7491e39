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
  proxy_start_or_finish "$n" "$n" --engine mptcp --ports 5201 --fail-policy closed
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
# tshark 4.0 still reads MP_CAPABLE flags the RFC 6824 (v0) way, where 0x20 was an algorithm
# bit; in v1 it is C, "do not join my initial address" (RFC 8684 §3.1), which we set (and Linux
# sets when allow_join_initial_addr_port=0). So "unsupported algorithm" counts only with one of
# the reserved bits D-G (0x1e) set.
# shellcheck disable=SC2086
if bad=$(tshark -r "$cap" $P -Y '(mptcp.dss.missing_mapping && tcp.len > 0) || mptcp.dss.infinite_mapping ||
   mptcp.connection.echoed_key_mismatch || mptcp.connection.missing_algorithm ||
   (mptcp.connection.unsupported_algorithm && (tcp.options.mptcp.flags & 0x1e)) ||
   tcp.options.mptcp.subtype == 6 || tcp.options.mptcp.subtype == 8 || (mptcp && tcp.flags.reset == 1)' \
   2>"$TB_DIR/tshark.err" | head -20) && [[ -z "$bad" ]]; then
  tb_pass "tshark MPTCP analysis: no missing mapping, key mismatch, bad algorithm, fallback or reset"
else
  tb_fail "tshark MPTCP analysis flagged packets (or failed: $(head -c 300 "$TB_DIR/tshark.err")):
$bad"
fi
# shellcheck disable=SC2086
mapped=$(tshark -r "$cap" $P -Y 'tcp.len > 0 && tcp.options.mptcp.datalvllen > 0' 2>/dev/null | wc -l)
if ((mapped > 100)); then tb_pass "tshark sees DSS mappings on $mapped data packets"
else tb_fail "tshark sees DSS mappings on only $mapped data packets"; fi

for n in mobile server; do check_stop "$n"; done
tb_finish
