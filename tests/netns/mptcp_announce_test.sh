#!/usr/bin/env bash
# mproxyd announces its own addresses (RFC 8684 §3.4.1; mptcp/DESIGN.md "Announcing our
# addresses"). The mobile host runs a PLAIN server behind mproxyd (--interfaces wlan0,eth1); a
# native Linux client in the server namespace (`ip mptcp limits set subflows 2 add_addr_accepted
# 2`) connects to the mobile's wlan0 address. mproxyd, the MP_CAPABLE passive side, announces eth1's
# address with ADD_ADDR (HMAC); the client echoes it, joins it (MP_JOIN to an announced address is
# allowed despite the C flag of our MP_CAPABLE, RFC 8684 §3.1) and sends over both subflows.
# Then `mproxyctl handover wlan0 eth1` on the mobile host moves (nearly) all bytes to eth1.
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
netns_test_begin --v6
tb_exec server ip mptcp limits set subflows 2 add_addr_accepted 2

proxy_start_or_finish mobile mob --engine mptcp --ports 5201 --fail-policy closed \
  --interfaces wlan0,eth1

# py_check DESCRIPTION PYTHON ARGS...: a python predicate (exit 0 = pass) as one check.
py_check() {
  local what=$1 code=$2
  shift 2
  tb_check "$what" python3 -c "$code" "$@"
}

# The client's SYNs on the server namespace's interface: MP_CAPABLE SYN to the wlan0 address, its
# MP_JOIN SYN to the announced eth1 address; the time between them is what the announcement costs.
syn_capture_start() {
  rm -f "$TB_DIR/$1.pcap"
  tb_bg server "$TB_DIR/$1.tcpdump.log" tcpdump -Z root -i eth0 -n -U -w "$TB_DIR/$1.pcap" \
    'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn or (ip6 and ip6[13+40] & 0x12 == 0x02)' \
    >/dev/null
  CAPTURE_PID=$TB_BG_PID
  sleep 0.5
}
syn_capture_report() {  # NAME INITIAL_DST JOIN_DST
  tb_stop "$CAPTURE_PID" 5
  tb_exec server tcpdump -r "$TB_DIR/$1.pcap" -n -tt 2>/dev/null | tee "$TB_DIR/$1.txt" | python3 -c '
import sys
first = {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 5: continue
    dst = f[4].rstrip(":").rsplit(".", 1)[0]
    first.setdefault(dst, float(f[0]))
a, b = sys.argv[1], sys.argv[2]
if a in first and b in first:
    print("%.1f" % ((first[b] - first[a]) * 1000))
else:
    print("n/a (SYNs seen to: %s)" % sorted(first))' "$2" "$3"
}

SIZE=${MPROXY_TEST_BYTES:-$((64 * 1024 * 1024))}
for fam in 4 6; do
  wlan=$(tb_addr mobile wlan0 "$fam")
  eth=$(tb_addr mobile eth1 "$fam")
  size=$SIZE
  [[ $fam == 6 ]] && size=$((SIZE / 4))
  counter_snapshot server
  echo0=$(proxy_counter mobile mob MpAddAddrEchoRx)
  retx0=$(proxy_counter mobile mob MpAddAddrRetx)
  tx0=$(proxy_counter mobile mob MpAddAddrTx)
  join0=$(proxy_counter mobile mob MpJoinAckRx)
  e0=$(if_bytes mobile eth1)
  syn_capture_start syn$fam
  peer_server mobile s$fam --proto tcp --family "$fam" --send "$size"
  # The client keeps its connection open until it has all of the server's bytes (no early
  # DATA_FIN: Linux refuses joins once the other side half-closed).
  peer_client server c$fam --proto mptcp --family "$fam" --connect "$wlan" --send "$size" &
  client=$!
  # The join shows in `conn show` with the announced ID and interface eth1 (a passive join).
  seen=""
  for _ in $(seq 200); do
    seen=$(proxy_ctl mobile mob -j conn show 2>/dev/null | python3 -c '
import json, sys
eth = sys.argv[1]
for c in json.load(sys.stdin).get("connections", []):
    for s in c.get("subflows", []):
        if s["local"].rsplit(":", 1)[0].strip("[]") == eth and s["state"] == "established":
            print("%s id %d %s" % (s["interface"], s["local_id"], s["local"]))
            sys.exit(0)
sys.exit(1)' "$eth" 2>/dev/null) && break
    sleep 0.05
  done
  if [[ "$seen" == eth1\ id\ [1-9]* ]]; then tb_pass "IPv$fam: the client's join to $eth is a subflow of ours: $seen"
  else tb_fail "IPv$fam: no established subflow on $eth in conn show (got '$seen')"; fi
  proxy_ctl mobile mob conn show | sed 's/^/    /' >&2
  wait "$client"
  peer_wait s$fam
  delay=$(syn_capture_report syn$fam "$wlan" "$eth")
  tb_log "IPv$fam: client MP_JOIN SYN to $eth came $delay ms after its MP_CAPABLE SYN to $wlan"
  tb_check "IPv$fam: $size bytes each way intact; client MPTCP_INFO: MPTCP, no fallback" \
    check_transfer c$fam s$fam 1 client
  py_check "IPv$fam: client MPTCP_INFO: one extra subflow, one ADD_ADDR accepted" '
import json, sys
m = json.loads(open(sys.argv[1]).readline())["mptcp"]
print("    mptcpi_subflows=%d add_addr_accepted=%d" % (m["subflows"], m["add_addr_accepted"]), file=sys.stderr)
sys.exit(0 if m["subflows"] == 1 and m["add_addr_accepted"] == 1 else 1)' "$TB_DIR/c$fam.json"
  expect_delta server AddAddr 1
  expect_delta server EchoAddTx 1
  expect_delta server MPJoinSynTx 1
  expect_delta server MPJoinSynAckRx 1
  expect_delta server MPCapableSYNACKRX 1
  v=$(( $(proxy_counter mobile mob MpAddAddrTx) - tx0 ))
  if ((v == 1)); then tb_pass "IPv$fam: mproxyd MpAddAddrTx +1"; else tb_fail "IPv$fam: mproxyd MpAddAddrTx +$v, expected 1"; fi
  v=$(( $(proxy_counter mobile mob MpAddAddrEchoRx) - echo0 ))
  if ((v >= 1)); then tb_pass "IPv$fam: mproxyd MpAddAddrEchoRx +$v (echoed)"; else tb_fail "IPv$fam: mproxyd MpAddAddrEchoRx +$v, expected >= 1"; fi
  v=$(( $(proxy_counter mobile mob MpAddAddrRetx) - retx0 ))
  if ((v == 0)); then tb_pass "IPv$fam: mproxyd MpAddAddrRetx +0 (the echo came in time)"; else tb_fail "IPv$fam: mproxyd MpAddAddrRetx +$v"; fi
  v=$(( $(proxy_counter mobile mob MpJoinAckRx) - join0 ))
  if ((v == 1)); then tb_pass "IPv$fam: mproxyd MpJoinAckRx +1 (passive join)"; else tb_fail "IPv$fam: mproxyd MpJoinAckRx +$v, expected 1"; fi
  de=$(( $(if_bytes mobile eth1) - e0 ))
  if ((de > size / 8)); then tb_pass "IPv$fam: eth1 carried $de bytes"; else tb_fail "IPv$fam: eth1 carried only $de bytes"; fi
  mptcp_assert_zero server
  for c in MpAddAddrGaveUp MpAddAddrBadHmac MpJoinRejected MpMultiFallback; do
    v=$(proxy_counter mobile mob "$c")
    if [[ "$v" == 0 ]]; then tb_pass "mproxyd $c = 0"; else tb_fail "mproxyd $c = $v"; fi
  done
  wait_conns_gone mobile mob 30 || tb_fail "IPv$fam: the connection was not freed after its close"
done

# Handover on the mobile host: the native client's joined subflow on eth1 becomes the regular
# path (MP_PRIO), wlan0's a backup; nearly all bytes then travel on eth1 (seed §5.3).
RATE=${MPROXY_HANDOVER_RATE:-100mbit}
for i in wlan0 eth1; do tb_rate mobile "$i" "$RATE"; tb_rate router "r-$i" "$RATE"; done
HSIZE=${MPROXY_HANDOVER_BYTES:-$((96 * 1024 * 1024))}
counter_snapshot server
peer_server mobile sh --proto tcp --send "$HSIZE"
peer_client server ch --proto mptcp --connect "$(tb_addr mobile wlan0 4)" --send "$HSIZE" &
client=$!
wait_conn_bytes mobile mob $((16 * 1024 * 1024)) || tb_fail "handover: the transfer did not start"
w0=$(if_bytes mobile wlan0) e0=$(if_bytes mobile eth1)
out=$(proxy_ctl mobile mob handover wlan0 eth1 2>&1)
rc=$?
if [[ $rc == 0 ]]; then tb_pass "handover wlan0 -> eth1 completed: $out"
else tb_fail "handover wlan0 -> eth1 (exit $rc): $out"; fi
sleep 1.5
w1=$(if_bytes mobile wlan0) e1=$(if_bytes mobile eth1)
proxy_ctl mobile mob conn show | sed 's/^/    /' >&2
wait "$client"
peer_wait sh
tb_check "handover: $HSIZE bytes each way intact; client MPTCP_INFO: MPTCP, no fallback" \
  check_transfer ch sh 1 client
dw=$((w1 - w0)) de=$((e1 - e0))
if ((de * 10 >= (dw + de) * 9 && de > 1000000)); then
  tb_pass "handover: in the 1.5 s after it eth1 carried $de bytes, wlan0 $dw"
else
  tb_fail "handover: in the 1.5 s after it eth1 carried $de bytes, wlan0 $dw (want >= 90% on eth1)"
fi
now=$(mptcp_counter server MPPrioRx)
if ((now - ${_SNAP[server/MPPrioRx]:-0} >= 1)); then tb_pass "handover: client MPPrioRx moved"
else tb_fail "handover: client MPPrioRx did not move"; fi
expect_delta server MPJoinSynTx 1
mptcp_assert_zero server

wait_conns_gone mobile mob 30 || tb_fail "handover: the connection was not freed after its close"

# eth1 goes down mid-transfer: its address leaves the daemon's list, so mproxyd sends REMOVE_ADDR
# for the announced ID (RFC 8684 §3.4.2) and the client drops its subflow there; when eth1 comes
# back the address is announced again. The stream stays exact throughout.
counter_snapshot server
rm0=$(proxy_counter mobile mob MpAnnounceRemoveTx)
tx0=$(proxy_counter mobile mob MpAddAddrTx)
peer_server mobile sr --proto tcp --send "$HSIZE"
peer_client server cr --proto mptcp --connect "$(tb_addr mobile wlan0 4)" --send "$HSIZE" &
client=$!
wait_conn_bytes mobile mob $((16 * 1024 * 1024)) || tb_fail "address loss: the transfer did not start"
tb_link mobile eth1 down
for _ in $(seq 40); do
  (($(mptcp_counter server RmAddr) > ${_SNAP[server/RmAddr]:-0})) && break
  sleep 0.05
done
expect_delta server RmAddr 1
v=$(( $(proxy_counter mobile mob MpAnnounceRemoveTx) - rm0 ))
if ((v == 1)); then tb_pass "address loss: mproxyd MpAnnounceRemoveTx +1"
else tb_fail "address loss: mproxyd MpAnnounceRemoveTx +$v, expected 1"; fi
sleep 1
tb_link mobile eth1 up
for _ in $(seq 60); do
  (($(mptcp_counter server AddAddr) > ${_SNAP[server/AddAddr]:-0} + 1)) && break
  sleep 0.05
done
proxy_ctl mobile mob conn show | sed 's/^/    /' >&2
wait "$client"
peer_wait sr
tb_check "address loss: $HSIZE bytes each way intact; client MPTCP_INFO: MPTCP, no fallback" \
  check_transfer cr sr 1 client
expect_delta server AddAddr 2
v=$(( $(proxy_counter mobile mob MpAddAddrTx) - tx0 ))
if ((v == 2)); then tb_pass "address loss: mproxyd MpAddAddrTx +2 (at the start, after eth1 came back)"
else tb_fail "address loss: mproxyd MpAddAddrTx +$v, expected 2"; fi
tb_log "address loss: client RmSubflow +$(( $(mptcp_counter server RmSubflow) - ${_SNAP[server/RmSubflow]:-0} )), MPJoinSynTx +$(( $(mptcp_counter server MPJoinSynTx) - ${_SNAP[server/MPJoinSynTx]:-0} )), MPJoinSynAckRx +$(( $(mptcp_counter server MPJoinSynAckRx) - ${_SNAP[server/MPJoinSynAckRx]:-0} ))"
python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())["mptcp"]
print("[testbed] address loss: client MPTCP_INFO at the end: mptcpi_subflows=%d add_addr_accepted=%d"
      % (m["subflows"], m["add_addr_accepted"]), file=sys.stderr)' "$TB_DIR/cr.json"
mptcp_assert_zero server

check_stop mob
tb_finish
