#!/usr/bin/env bash
# Issue 4, daemon side: `mproxyd --interfaces wlan0,eth1` learns the interfaces through rtnetlink
# and gives each its own policy routing; forged packets leave through the interface of their
# source address.
#  - the testbed's own source routing (rules to tables 101/102) is removed first, so what routes
#    eth1's address below is ours alone; the main table keeps both default routes, wlan0's
#    preferred (metric 100 vs 200);
#  - before mproxyd: a forged SYN (RawSender, ifindex 0) with eth1's source leaves via wlan0;
#  - with mproxyd: `ip rule` / `ip route show table N` hold exactly our rules and copied routes
#    (IPv4 and IPv6), the same forged SYN leaves via eth1 (ifindex 0 and ifindex = eth1), and
#    `ip route get ... mark M` follows the fwmark rule;
#  - a converted connection's packets leave via eth1 after `mproxyctl handover wlan0 eth1`
#    (skipped while the engine refuses handovers);
#  - an address added to / removed from eth1, eth1 down / up and a changed default route are
#    followed (rules, tables, `mproxyctl status`);
#  - someone else's rule at our priority (other table) and route in another table survive
#    everything; SIGTERM leaves no rule or route of ours; after SIGKILL the next start sweeps the
#    leftovers and converges without duplicates;
#  - a missing interface is a clear startup error (exit 1, nothing left behind); an interface that
#    is down at start is fine and a handover to it fails with a message (exit != 0).
set -u
MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$MPROXY_SRC/tests/testbed/testbed.sh"
source "$MPROXY_SRC/tests/netns/lib.sh"
tb_require_root
UNIT=$MPROXY_BUILD/tests/proxy_unit_tests
[[ -x $UNIT ]] || { echo "FAIL: $UNIT not built"; exit 1; }
tb_create --v6 || { echo "FAIL: testbed"; exit 1; }
NS=$(tb_ns mobile)
W4=198.18.1.2 E4=198.18.2.2 W6=2001:db8:1::2 E6=2001:db8:2::2
T_W=19792 T_E=19793 # default --route-table-base 0x4d50 + index; priorities the same

ip -n "$NS" -4 rule del from $W4 lookup 101
ip -n "$NS" -4 rule del from $E4 lookup 102
ip -n "$NS" -6 rule del from $W6 lookup 101
ip -n "$NS" -6 rule del from $E6 lookup 102
# Someone else's: a rule at one of our priorities pointing at a table that is not ours, and a
# route in a table of its own. Neither may ever be touched.
ip -n "$NS" -4 rule add from 198.18.2.99 lookup 200 prio $T_E
# (a blackhole: no device, so eth1 going down below cannot take it with it)
ip -n "$NS" -4 route add blackhole 198.18.99.0/24 table 200

# Which interface a forged packet left by: counters of mangle POSTROUTING rules per interface.
for t in iptables ip6tables; do
  for i in wlan0 eth1; do
    tb_exec mobile "$t" -w -t mangle -A POSTROUTING -o "$i" -p tcp --dport 9999 -j ACCEPT
  done
done
out_count() { # IF [ip6tables]
  tb_exec mobile "${2:-iptables}" -w -t mangle -L POSTROUTING -v -x -n |
    awk -v i="$1" '$7 == i { print $1 }'
}
# forge SRC DST [IFINDEX]: one SYN through proxy/raw_socket.cc's RawSender.
forge() {
  tb_exec mobile env MPROXY_FORGE_SRC="$1" MPROXY_FORGE_DST="$2" MPROXY_FORGE_IFINDEX="${3:-0}" \
    "$UNIT" --gtest_filter=RawSenderLive.ForgedSynFromEnvironment >"$TB_DIR/forge.log" 2>&1 &&
    grep -q '\[       OK \]' "$TB_DIR/forge.log"
}
# leaves_via IF FAMILY SRC DST [IFINDEX]: the forged SYN left through IF and not the other one.
leaves_via() {
  local want=$1 fam=$2 other=wlan0 tool=iptables
  [[ $want == wlan0 ]] && other=eth1
  [[ $fam == 6 ]] && tool=ip6tables
  local w0 o0 w1 o1
  w0=$(out_count "$want" $tool) o0=$(out_count "$other" $tool)
  forge "$3" "$4" "${5:-0}" || { cat "$TB_DIR/forge.log"; return 1; }
  w1=$(out_count "$want" $tool) o1=$(out_count "$other" $tool)
  ((w1 == w0 + 1 && o1 == o0)) || { echo "$want: $w0 -> $w1, $other: $o0 -> $o1"; return 1; }
}

ours() { # every rule at our priorities and every route in our tables, both families
  {
    ip -n "$NS" -4 rule show | awk -F: '$1 >= 19792 && $1 < 19824'
    ip -n "$NS" -6 rule show | awk -F: '$1 >= 19792 && $1 < 19824'
    for t in $(seq 19792 19823); do
      ip -n "$NS" -4 route show table "$t" 2>/dev/null | sed "s/^/$t: /"
      ip -n "$NS" -6 route show table "$t" 2>/dev/null | sed "s/^/$t: /"
    done
  } | grep -v 'lookup 200' # someone else's rule at our priority
}
nothing_of_ours() {
  local left
  left=$(ours)
  [[ -z $left ]] || { echo "left behind:"; echo "$left"; return 1; }
}
foreign_intact() {
  ip -n "$NS" -4 rule show | grep -q "^$T_E:.*from 198.18.2.99 lookup 200" &&
    ip -n "$NS" -4 route show table 200 | grep -q 'blackhole 198.18.99.0/24'
}
has_rule() { ip -n "$NS" "-$1" rule show | grep -qE "^$2:[[:space:]]+$3"; }
has_route() { ip -n "$NS" "-$1" route show table "$2" | grep -qE "$3"; }
# wait_for CMD...: up to 3 s for a notification-driven change.
wait_for() {
  local i
  for i in $(seq 60); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  "$@"
}
not() { ! "$@"; }
# stop_ok [SIGNAL]: proxy_stop must run in this shell (it waits for its child), not in tb_check.
stop_ok() {
  local what="SIG${1:-TERM}: mproxyd exits 0"
  if proxy_stop rt "${1:-TERM}"; then tb_pass "$what"; else tb_fail "$what"; fi
}
status_json() { proxy_ctl mobile rt -j status; }
iface_field() { # IF FIELD: from `mproxyctl -j status`
  status_json | python3 -c '
import json, sys
for i in json.load(sys.stdin)["interfaces"]:
    if i["name"] == sys.argv[1]: print(i[sys.argv[2]] if not isinstance(i[sys.argv[2]], list) else " ".join(i[sys.argv[2]]))' "$1" "$2"
}

# ---- without mproxyd: the main table routes by destination only -----------------------------
tb_check "no daemon: forged SYN from eth1's IPv4 address leaves via wlan0 (main default)" \
  leaves_via wlan0 4 $E4 "$TB_SERVER4"
tb_check "no daemon: forged SYN from eth1's IPv6 address leaves via wlan0 (main default)" \
  leaves_via wlan0 6 $E6 "$TB_SERVER6"
# IPv6 treats the pktinfo interface only as a hint once a source is given (no strict oif):
tb_check "no daemon: IPv6 SYN from eth1's address with ifindex eth1 still leaves via wlan0" \
  leaves_via wlan0 6 $E6 "$TB_SERVER6" 3

# ---- with mproxyd -----------------------------------------------------------------------------
start() { proxy_start mobile rt --engine mptcp --ports 9999 --interfaces wlan0,eth1 "$@"; }
start || { tb_fail "mproxyd --interfaces wlan0,eth1 starts"; tb_finish; }
tb_pass "mproxyd --interfaces wlan0,eth1 starts"

tb_check "ip rule: from $W4 lookup $T_W" has_rule 4 $T_W "from $W4 lookup $T_W"
tb_check "ip rule: from $E4 lookup $T_E" has_rule 4 $T_E "from $E4 lookup $T_E"
tb_check "ip rule: fwmark 0x10000/0xff0000 lookup $T_W" has_rule 4 $T_W "from all fwmark 0x10000/0xff0000 lookup $T_W"
tb_check "ip rule: fwmark 0x20000/0xff0000 lookup $T_E" has_rule 4 $T_E "from all fwmark 0x20000/0xff0000 lookup $T_E"
tb_check "ip -6 rule: from $E6 lookup $T_E" has_rule 6 $T_E "from $E6 lookup $T_E"
tb_check "ip -6 rule: fwmark 0x20000/0xff0000 lookup $T_E" has_rule 6 $T_E "from all fwmark 0x20000/0xff0000 lookup $T_E"
tb_check "table $T_E: default via 198.18.2.1 dev eth1" has_route 4 $T_E '^default via 198.18.2.1 dev eth1 '
tb_check "table $T_E: 198.18.2.0/24 dev eth1 src $E4" has_route 4 $T_E "^198.18.2.0/24 dev eth1 .*src $E4"
tb_check "table $T_W: default via 198.18.1.1 dev wlan0" has_route 4 $T_W '^default via 198.18.1.1 dev wlan0 '
tb_check "table $T_E (IPv6): default via 2001:db8:2::1 dev eth1" has_route 6 $T_E '^default via 2001:db8:2::1 dev eth1 '
tb_check "table $T_E (IPv6): 2001:db8:2::/64 dev eth1" has_route 6 $T_E '^2001:db8:2::/64 dev eth1 '
tb_check "table $T_E holds only eth1 routes" bash -c \
  "! ip -n $NS -4 route show table $T_E | grep -v 'dev eth1' | grep -q . &&
   ! ip -n $NS -6 route show table $T_E | grep -v 'dev eth1' | grep -q ."
eight_rules() {
  local n
  n=$({ ip -n "$NS" -4 rule; ip -n "$NS" -6 rule; } | grep -cE "lookup ($T_W|$T_E)")
  ((n == 8)) || { echo "$n rules"; return 1; }
}
tb_check "8 rules of ours (2 interfaces x 2 families x from+fwmark)" eight_rules
status_eth1_up() {
  [[ $(iface_field eth1 table) == "$T_E" && $(iface_field eth1 addresses) == "$E4 $E6" &&
    $(iface_field eth1 state) == up && $(iface_field eth1 ifindex) == 3 ]] || { status_json; return 1; }
}
tb_check "mproxyctl status: eth1 ifindex, addresses, table, state" status_eth1_up

tb_check "forged SYN from eth1's IPv4 address (ifindex 0) leaves via eth1" \
  leaves_via eth1 4 $E4 "$TB_SERVER4"
tb_check "forged SYN from eth1's IPv6 address (ifindex 0) leaves via eth1" \
  leaves_via eth1 6 $E6 "$TB_SERVER6"
tb_check "forged SYN from eth1's IPv4 address with ifindex eth1 leaves via eth1" \
  leaves_via eth1 4 $E4 "$TB_SERVER4" 3
tb_check "forged SYN from eth1's IPv6 address with ifindex eth1 leaves via eth1" \
  leaves_via eth1 6 $E6 "$TB_SERVER6" 3
tb_check "forged SYN from wlan0's address still leaves via wlan0" \
  leaves_via wlan0 4 $W4 "$TB_SERVER4"
tb_check "ip route get $TB_SERVER4 mark 0x20000 -> dev eth1" bash -c \
  "ip -n $NS -4 route get $TB_SERVER4 mark 0x20000 | grep -q 'dev eth1'"
tb_check "our own raw-socket mark (0x4d50) matches no fwmark rule: main table, wlan0" bash -c \
  "ip -n $NS -4 route get $TB_SERVER4 mark 0x4d50 | grep -q 'dev wlan0'"

# ---- a converted connection's rewritten packets follow the handover ---------------------------
# A plain TCP client on the mobile host, converted by mproxyd, against a native MPTCP server. After
# `mproxyctl handover wlan0 eth1` the engine rewrites the local stack's segments onto the eth1
# subflow (source 198.18.2.2); the kernel reroutes them after the verdict by that source
# (nf_reroute), so only the `from` rule sends them out of eth1: wlan0 must go quiet. Skipped while
# the engine refuses handovers (its control API is a placeholder until the subflow engine lands).
handover_e2e() {
  mptcp_sysctl server
  tb_exec server ip mptcp limits set subflows 4 add_addr_accepted 4
  for i in wlan0 eth1; do
    tb_rate router "r-$i" 40mbit
    tb_rate mobile "$i" 40mbit
  done
  peer_server server hs --proto mptcp --port 9999 --send 20000000 --timeout 30
  peer_client mobile hc --port 9999 --connect "$TB_SERVER4" --send 20000000 --timeout 30 &
  local client=$!
  sleep 0.7
  local out rc
  out=$(proxy_ctl mobile rt handover wlan0 eth1 --timeout 5 2>&1)
  rc=$?
  if [[ $out == *"not implemented"* ]]; then
    tb_skip "handover moves the rewritten packets to eth1 (engine: $out)"
    wait $client
    peer_wait hs
  else
    if [[ $rc == 0 ]]; then tb_pass "mproxyctl handover wlan0 eth1: exit 0 ($out)"
    else tb_fail "mproxyctl handover wlan0 eth1: exit $rc ($out)"; fi
    # Data segments only (IP length over 200): the old subflow still ACKs, correctly on wlan0,
    # what the server had in flight there before it switched too.
    sleep 0.2
    local f='tcp dst port 9999 and greater 200'
    tb_exec mobile timeout 0.8 tcpdump -lni wlan0 "$f" >"$TB_DIR/hw.txt" 2>/dev/null &
    tb_exec mobile timeout 0.8 tcpdump -lni eth1 "$f" >"$TB_DIR/he.txt" 2>/dev/null
    wait $!
    # New data must leave via eth1; wlan0 may still carry a retransmission of bytes it carried
    # before (seed §3.2: retransmissions stay on their subflow): every wlan0 data segment must end
    # at or below the lowest data sequence number seen on eth1 (the DSS "seq ... len ...").
    local w e new
    w=$(grep -c " > " "$TB_DIR/hw.txt") e=$(grep -c " > " "$TB_DIR/he.txt")
    new=$(python3 - "$TB_DIR/hw.txt" "$TB_DIR/he.txt" <<'PY'
import re, sys
def dss(path):
    for line in open(path):
        m = re.search(r"dss .*?seq (\d+) subseq \d+ len (\d+)", line)
        if m:
            yield int(m.group(1)), int(m.group(2))
eth1 = [s for s, _ in dss(sys.argv[2])]
low = min(eth1) if eth1 else 0
print(sum(1 for s, l in dss(sys.argv[1]) if s + l > low))
PY
)
    if ((new == 0 && e >= 5)); then
      tb_pass "after the handover the connection's new data leaves via eth1 (data segments: wlan0 $w, all retransmissions of its own bytes; eth1 $e)"
    else
      tb_fail "after the handover: data segments wlan0 $w ($new with new data), eth1 $e"
      cat -A "$TB_DIR/hw.txt" | head -5; head -3 "$TB_DIR/he.txt"
    fi
    wait $client
    peer_wait hs
    tb_check "handover: 20 MB each way intact (sha256), MPTCP on the server" check_transfer hc hs 1 server
  fi
  for i in wlan0 eth1; do
    tb_rate router "r-$i" off
    tb_rate mobile "$i" off
  done
}
handover_e2e

# ---- changes are followed ---------------------------------------------------------------------
ip -n "$NS" -4 addr add 198.18.2.3/24 dev eth1
tb_check "new address 198.18.2.3 on eth1: rule added" wait_for has_rule 4 $T_E "from 198.18.2.3 lookup $T_E"
status_has_addr() { iface_field eth1 addresses | grep -q "$1"; }
tb_check "new address: in mproxyctl status" wait_for status_has_addr 198.18.2.3
ip -n "$NS" -4 addr del 198.18.2.3/24 dev eth1
tb_check "address removed: rule removed" wait_for not has_rule 4 $T_E "from 198.18.2.3 lookup $T_E"
tb_link mobile eth1 down
tb_check "eth1 down: its rules go" wait_for not has_rule 4 $T_E "from $E4 lookup $T_E"
status_eth1_down() { [[ $(iface_field eth1 state) == down && -z $(iface_field eth1 addresses) ]]; }
tb_check "eth1 down: status says down, no addresses" wait_for status_eth1_down
tb_check "eth1 down: wlan0's rules stay" has_rule 4 $T_W "from $W4 lookup $T_W"
tb_link mobile eth1 up
tb_check "eth1 up: rules back" wait_for has_rule 4 $T_E "from $E4 lookup $T_E"
tb_check "eth1 up: default route copied again" wait_for has_route 4 $T_E '^default via 198.18.2.1 dev eth1 '
tb_check "eth1 up: IPv6 default route copied again" wait_for has_route 6 $T_E '^default via 2001:db8:2::1 dev eth1 '
ip -n "$NS" -4 route replace default via 198.18.2.1 dev eth1 metric 250
ip -n "$NS" -4 route del default via 198.18.2.1 dev eth1 metric 200
tb_check "main default via eth1 re-added with metric 250: copy follows" \
  wait_for has_route 4 $T_E '^default via 198.18.2.1 dev eth1 .*metric 250'
tb_check "... and the metric-200 copy is gone" wait_for not has_route 4 $T_E 'metric 200'

# ---- clean stop, crash, sweep -----------------------------------------------------------------
stop_ok
tb_check "SIGTERM: no rule or route of ours left" nothing_of_ours
tb_check "someone else's rule and route untouched" foreign_intact

start || tb_fail "mproxyd restarts"
proxy_stop rt KILL
left_behind() { [[ -n $(ours) ]]; }
tb_check "SIGKILL: our rules are left behind (a crashed run)" left_behind
start || tb_fail "mproxyd starts after the crash"
tb_check "next start: stale policy routing removed (log)" grep -q 'stale route(s)/rule(s) of an earlier run' "$TB_DIR/rt.log"
tb_check "next start: 8 rules, no duplicates" eight_rules
stop_ok
tb_check "nothing of ours left" nothing_of_ours
tb_check "someone else's rule and route still untouched" foreign_intact

# ---- startup errors ---------------------------------------------------------------------------
missing() {
  local out rc
  out=$(tb_exec mobile "$MPROXYD" --engine mptcp --ports 9999 --interfaces wlan0,wwan9 \
    --control-socket "$TB_DIR/miss.sock" --rule-prefix MPXMISS 2>&1)
  rc=$?
  [[ $rc == 1 ]] || { echo "exit $rc: $out"; return 1; }
  grep -q 'interface wwan9 does not exist' <<<"$out" || { echo "$out"; return 1; }
}
tb_check "missing interface: exit 1 with a clear message" missing
tb_check "missing interface: nothing of ours left" nothing_of_ours
tb_check "missing interface: no iptables chain left" bash -c \
  "! ip netns exec $NS iptables-save | grep -q MPXMISS"

tb_link mobile eth1 down
start || tb_fail "mproxyd starts with eth1 down"
tb_check "eth1 down at start: running, eth1 state down" status_eth1_down
tb_check "eth1 down at start: only wlan0's rules" bash -c \
  "! ip -n $NS -4 rule | grep -q 'lookup $T_E' && ip -n $NS -4 rule | grep -q 'lookup $T_W'"
handover_refused() {
  local out rc
  out=$(proxy_ctl mobile rt handover wlan0 eth1 --timeout 2 2>&1)
  rc=$?
  echo "exit $rc: $out"
  [[ $rc == 1 && $out == *"interface eth1 has no usable address"* ]]
}
tb_check "handover to the down interface: exit 1, 'eth1 has no usable address'" handover_refused
tb_link mobile eth1 up
tb_check "eth1 comes up later: its rules appear" wait_for has_rule 4 $T_E "from $E4 lookup $T_E"
stop_ok
tb_check "nothing of ours left" nothing_of_ours
tb_finish
