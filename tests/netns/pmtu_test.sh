#!/usr/bin/env bash
# Path MTU discovery through mproxyd (RFC 1191; mptcp/icmp.cc). The mobile's eth1 and the router's
# interface towards it have an MTU of 1280, wlan0 keeps 1500. A 64 MiB transfer starts on wlan0;
# mid-transfer `mproxyctl handover wlan0 eth1` moves it to a join on eth1, where the sender's
# full-size segments no longer fit. The router (download: towards the server) or the mobile's own
# IP layer (upload: ip_fragment() -> icmp_send(), delivered over lo) answers with ICMP
# "fragmentation needed" quoting the JOIN's tuple and subflow sequence number, which the sending
# host's TCP would ignore. The sender's engine must translate it (counted MpIcmpPtbTranslated) so
# the plain TCP sender lowers its path MTU (seen with `ss -ti`: pmtu/mss) and the transfer finishes.
#
# Cases: mproxyd on both ends (plain TCP apps), download and upload; the mobile behind mproxyd
# against a native Linux MPTCP server, upload (ours to fix) and download (the native server handles
# its own subflows' ICMP: a control).
#
# PMTU_DEBUG=1 also captures the ICMP each node receives ($TB_DIR/icmp_NODE.txt, printed at the
# end). PMTU_NO_FIX=1 removes the path-MTU queue hooks after the daemons start (the ICMP then reaches the
# kernel untranslated, as before this feature): the test then expects and reports the black hole
# (no progress for PMTU_STALL_S seconds) instead of completion.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2

NO_FIX=${PMTU_NO_FIX:-0}
SIZE=${MPROXY_TEST_BYTES:-$((64 * 1024 * 1024))}
DEADLINE=${PMTU_DEADLINE_S:-60}  # a finished transfer takes a few seconds
STALL=${PMTU_STALL_S:-20}        # without the fix: no byte delivered for this long = black hole
RATE=${MPROXY_PMTU_RATE:-100mbit}
for i in wlan0 eth1; do tb_rate mobile "$i" "$RATE"; tb_rate router "r-$i" "$RATE"; done
tb_exec mobile ip link set eth1 mtu 1280
tb_exec router ip link set r-eth1 mtu 1280

if [[ ${PMTU_DEBUG:-0} == 1 ]]; then
  for n in mobile server; do
    tb_bg "$n" "$TB_DIR/icmp_$n.txt" tcpdump -l -n -v -i any icmp >/dev/null
  done
  tb_atexit 'for n in mobile server; do echo "== ICMP at $n"; head -40 "$TB_DIR/icmp_$n.txt"; done >&2'
fi

pcount() { if [[ $2 == none ]]; then echo 0; else proxy_counter "$1" "$2" "$3"; fi; }

# no_fix NODE NAME: delete the daemon's path-MTU hook (v4), as if the feature did not exist.
no_fix() {
  tb_exec "$1" iptables -w -t raw -D PREROUTING -p icmp -m icmp --icmp-type 3/4 \
    -m comment --comment mproxy -j "MPX${2^^}-PTB"
}

# pmtu_of NODE: "pmtu mss" of NODE's established TCP connection on port 5201 (ss -ti).
pmtu_of() {
  tb_exec "$1" ss -tniH state established '( sport = :5201 or dport = :5201 )' |
    grep -oE '(pmtu|mss):[0-9]+' | tr '\n' ' '
}

# transfer CASE DIR PROTO SENDER_NODE SENDER_DAEMON: one transfer with a handover in its middle.
transfer() {
  local case=$1 dir=$2 proto=$3 snode=$4 sname=$5 srv_args cli_args client t0 t1 tr0 tr rx0
  # Both directions stay open until the end: a native peer refuses joins after the DATA_FIN.
  if [[ $dir == down ]]; then
    srv_args=(--send "$SIZE") cli_args=(--send 65536 --no-fin)
  else
    srv_args=(--send 65536 --no-fin) cli_args=(--send "$SIZE")
  fi
  # Every transfer starts with no path MTU learnt: the previous one's exceptions are flushed.
  tb_exec mobile ip route flush cache
  tb_exec server ip route flush cache
  tr0=$(pcount "$snode" "$sname" MpIcmpPtbTranslated)
  peer_server server "s_${case}_$dir" --proto "$proto" --timeout $((DEADLINE + STALL)) \
    "${srv_args[@]}"
  t0=$(date +%s.%N)
  peer_client mobile "c_${case}_$dir" --connect "$TB_SERVER4" --timeout $((DEADLINE + STALL)) \
    "${cli_args[@]}" &
  client=$!
  wait_conn_bytes mobile mob $((8 * 1024 * 1024)) || tb_fail "$case $dir: the transfer did not start"
  local before
  before=$(pmtu_of "$snode")
  out=$(proxy_ctl mobile mob handover wlan0 eth1 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then tb_pass "$case $dir: handover wlan0 -> eth1: $out"
  else tb_fail "$case $dir: handover wlan0 -> eth1 (exit $rc): $out"; fi
  sleep 1.5
  local after
  after=$(pmtu_of "$snode")
  tb_log "$case $dir: sender ($snode) before the handover: ${before:-?}; 1.5 s after: ${after:-gone}"
  # Back to wlan0 (MTU 1500) while the transfer goes on: the stack keeps the lowered MTU, and the
  # initial subflow's packets (its segments + our options) exceed its route's exception: DF is
  # cleared on them (MpPmtuDfCleared) and the kernel fragments them (mptcp/icmp.cc).
  # PMTU_BACK=1 only: with mproxyd on both ends the fragments this leads to stall the transfer
  # (the receiving engine passes IPv4 fragments untranslated: README "Not done yet").
  if [[ ${PMTU_BACK:-0} == 1 ]]; then
    local back_out back
    back_out=$(proxy_ctl mobile mob handover eth1 wlan0 2>&1)
    sleep 1.5
    back=$(pmtu_of "$snode")
    tb_log "$case $dir: handover back to wlan0 mid-transfer: $back_out; 1.5 s later: ${back:-gone}"
  fi

  # Wait for the end, or (without the fix) for the stall.
  local last=-1 last_t now_b finished=0 start
  start=$(date +%s) last_t=$start
  while (($(date +%s) - start < DEADLINE)); do
    if [[ ! -e /proc/$client ]]; then finished=1; break; fi
    now_b=$(conn_sum mobile mob bytes_rx bytes_tx)
    if [[ $now_b != "$last" ]]; then last=$now_b last_t=$(date +%s); fi
    if ((NO_FIX && $(date +%s) - last_t >= STALL)); then break; fi
    sleep 0.1
  done
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  tr=$(($(pcount "$snode" "$sname" MpIcmpPtbTranslated) - tr0))
  if ((NO_FIX)); then
    if ((finished)); then
      tb_fail "$case $dir: without the fix the transfer finished anyway in $secs s (translated +$tr)"
    else
      tb_pass "$case $dir: without the fix: black hole, the connection stalled at $last bytes for ${STALL} s ($secs s after the start; translated +$tr)"
    fi
    kill "$client" 2>/dev/null
    wait "$client" 2>/dev/null
    kill "$(cat "$TB_DIR/s_${case}_$dir.pid")" 2>/dev/null
    peer_wait "s_${case}_$dir" 10
    proxy_ctl mobile mob handover eth1 wlan0 >/dev/null 2>&1
    wait_conns_gone mobile mob 15 || tb_log "$case $dir: the stalled connection still lingers"
    return
  fi
  if ((finished)); then
    wait "$client"
    tb_pass "$case $dir: $SIZE bytes transferred in $secs s (deadline $DEADLINE s)"
  else
    tb_fail "$case $dir: not finished after $secs s"
    kill "$client" 2>/dev/null
  fi
  peer_wait "s_${case}_$dir" 20
  tb_check "$case $dir: stream intact (sha256)" check_transfer "c_${case}_$dir" "s_${case}_$dir" 1 \
    "$([[ $proto == mptcp ]] && echo server)"
  if [[ $sname == none ]]; then
    tb_log "$case $dir: the native server handles its own subflows' ICMP (mobile translated +$tr)"
  elif ((tr >= 1)); then
    tb_pass "$case $dir: the sender's engine ($snode) translated $tr frag-needed message(s)"
  else
    tb_fail "$case $dir: the sender's engine ($snode) translated none"
  fi
  local pmtu
  pmtu=$(grep -oE 'pmtu:[0-9]+' <<<"$after" | head -1 | cut -d: -f2)
  if [[ $sname == none ]]; then
    :
  elif [[ -n $pmtu ]] && ((pmtu < 1280)); then
    tb_pass "$case $dir: the sender's TCP lowered its path MTU ($after)"
  else
    tb_fail "$case $dir: the sender's TCP after the handover: '${after}' (want pmtu < 1280)"
  fi
  proxy_ctl mobile mob handover eth1 wlan0 >/dev/null 2>&1
  wait_conns_gone mobile mob 30 || tb_fail "$case $dir: the connection was not freed after its close"
}

# ---- mproxyd on both ends ----------------------------------------------------------------------
proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1
proxy_start_or_finish server srv --engine mptcp --ports 5201 --fail-policy closed
if ((NO_FIX)); then no_fix mobile mob; no_fix server srv; fi
transfer proxy down tcp server srv
transfer proxy up tcp mobile mob
for n in "mobile mob" "server srv"; do
  for c in MpIcmpMalformed MpMappingConflict MpSpansMappings MpCsumBad; do
    # shellcheck disable=SC2086
    v=$(pcount $n "$c")
    if [[ "$v" == 0 ]]; then tb_pass "${n% *}: $c = 0"; else tb_fail "${n% *}: $c = $v"; fi
  done
  # shellcheck disable=SC2086
  tb_log "${n% *} ICMP counters: $(for c in MpIcmpPtbRx MpIcmpPtbTranslated MpIcmpPtbNotOurs \
    MpIcmpPtbSeqUnmapped MpIcmpMalformed MpIcmpOther MpPmtuDfCleared; do printf '%s=%s ' "$c" "$(pcount $n $c)"; done)"
done
check_stop srv

# ---- the mobile behind mproxyd, native Linux MPTCP server -------------------------------------
transfer native up mptcp mobile mob
# A control: the native server handles the ICMP of its own subflows (without the fix too).
((NO_FIX)) || transfer native down mptcp server none
tb_log "mobile ICMP counters: $(for c in MpIcmpPtbRx MpIcmpPtbTranslated MpIcmpPtbNotOurs \
  MpIcmpPtbSeqUnmapped MpIcmpMalformed MpIcmpOther MpPmtuDfCleared; do printf '%s=%s ' "$c" "$(pcount mobile mob $c)"; done)"
((NO_FIX)) || mptcp_assert_zero server
check_stop mob
tb_finish
