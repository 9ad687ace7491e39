#!/usr/bin/env bash
# Issue 4, case 5 (PROXY <-> PROXY handover): mproxyd on both ends, plain-TCP applications on both
# (the server's behind `mproxyd --engine mptcp --ports 5201`). Mid-transfer `mproxyctl handover
# wlan0 eth1` on the mobile host opens an MP_JOIN subflow from eth1, which the server-side engine
# accepts as a passive join (mptcp/DESIGN.md "Passive join"), and moves sending there
# (make-before-break, seed §5.3); later the handover goes back. Both directions, sha256 intact,
# the join and MP_PRIO counted on both engines, and the bytes move to eth1.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
tb_require_root
tb_create

RATE=${MPROXY_HANDOVER_RATE:-200mbit}
for i in wlan0 eth1; do tb_rate mobile "$i" "$RATE"; tb_rate router "r-$i" "$RATE"; done
SIZE=${MPROXY_TEST_BYTES:-$((96 * 1024 * 1024))}

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1
proxy_start_or_finish server srv --engine mptcp --ports 5201 --fail-policy closed

pcount() { proxy_counter "$1" "$2" "$3"; }

for dir in down up; do
  js0=$(pcount server srv MpJoinAckRx) jm0=$(pcount mobile mob MpJoinEstablished)
  pr0=$(pcount server srv MpMpPrioRx)
  if [[ $dir == down ]]; then
    srv_args=(--send "$SIZE") cli_args=(--send $((1024 * 1024)))
  else
    srv_args=(--send $((1024 * 1024))) cli_args=(--send "$SIZE")
  fi
  peer_server server s_$dir --proto tcp "${srv_args[@]}"
  peer_client mobile c_$dir --proto tcp --connect "$TB_SERVER4" "${cli_args[@]}" &
  client=$!
  wait_conn_bytes mobile mob $((16 * 1024 * 1024)) || tb_fail "$dir: the transfer did not start"
  w0=$(if_bytes mobile wlan0) e0=$(if_bytes mobile eth1)
  out=$(proxy_ctl mobile mob handover wlan0 eth1 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$dir: handover wlan0 -> eth1 completed: $out"
  else tb_fail "$dir: handover wlan0 -> eth1 (exit $rc): $out"; fi
  # Loss on the new path while it carries the transfer: the receiver's engine SACKs the holes on
  # the join (SSN space), the sender's engine must hand them to its plain TCP sender as TSN blocks
  # (seed §3.5), which then recovers by SACK instead of waiting for RTOs.
  if [[ $dir == down ]]; then snode=server sname=srv lossif=r-eth1
  else snode=mobile sname=mob lossif=r-srv; fi
  sr0=$(tcp_ext "$snode" TCPSackRecovery) sp0=$(pcount "$snode" "$sname" MpSackProjected)
  tb_loss router "$lossif" 0.5
  sleep 1.5
  tb_loss router "$lossif" 0
  sr=$(($(tcp_ext "$snode" TCPSackRecovery) - sr0)) sp=$(($(pcount "$snode" "$sname" MpSackProjected) - sp0))
  if ((sr >= 1 && sp >= 1)); then
    tb_pass "$dir: losses on the join recovered by SACK (sender TCPSackRecovery +$sr, MpSackProjected +$sp)"
  else
    tb_fail "$dir: sender TCPSackRecovery +$sr, MpSackProjected +$sp during loss on the join (want >= 1 each)"
  fi
  w1=$(if_bytes mobile wlan0) e1=$(if_bytes mobile eth1)
  out=$(proxy_ctl mobile mob handover eth1 wlan0 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$dir: handover eth1 -> wlan0 completed: $out"
  else tb_fail "$dir: handover eth1 -> wlan0 (exit $rc): $out"; fi
  wait "$client"
  peer_wait s_$dir
  tb_check "$dir: $SIZE bytes intact across two PROXY<->PROXY handovers" \
    check_transfer c_$dir s_$dir 1
  dw=$((w1 - w0)) de=$((e1 - e0))
  if ((de * 10 >= (dw + de) * 9 && de > 1000000)); then
    tb_pass "$dir: after the handover eth1 carried $de bytes, wlan0 $dw"
  else
    tb_fail "$dir: after the handover eth1 carried $de bytes, wlan0 $dw (want >= 90% on eth1)"
  fi
  js=$(($(pcount server srv MpJoinAckRx) - js0)) jm=$(($(pcount mobile mob MpJoinEstablished) - jm0))
  pr=$(($(pcount server srv MpMpPrioRx) - pr0))
  if ((js == 1 && jm == 1)); then tb_pass "$dir: one join, established on both engines"
  else tb_fail "$dir: joins: server MpJoinAckRx +$js, mobile MpJoinEstablished +$jm (want 1, 1)"; fi
  if ((pr >= 2)); then tb_pass "$dir: the server engine got MP_PRIO for both handovers (+$pr)"
  else tb_fail "$dir: server MpMpPrioRx +$pr, expected >= 2"; fi
  # The next phase's handover must find only its own connection.
  wait_conns_gone mobile mob 30 || tb_fail "$dir: the connection was not freed after its close"
done
for n in "mobile mob" "server srv"; do
  for c in MpMappingConflict MpSpansMappings MpCsumBad MpJoinRejected MpNoMapping; do
    # shellcheck disable=SC2086
    v=$(pcount $n "$c")
    if [[ "$v" == 0 ]]; then tb_pass "${n% *}: $c = 0"; else tb_fail "${n% *}: $c = $v"; fi
  done
done

check_stop mob
check_stop srv
tb_finish
