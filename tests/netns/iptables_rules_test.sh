#!/usr/bin/env bash
# shellcheck disable=SC2317  # helpers are called through tb_check
# iptables/ against the real iptables tools and kernel (driver: tests/testbed/mproxy_rules).
#
# Part 1, in a fresh namespace of its own holding someone else's rules in raw, mangle and filter:
#   apply + remove leaves iptables-save / ip6tables-save identical; a crashed run (apply, then a
#   new process sweeping with `stale`) is cleaned; duplicated hooks, other prefixes and foreign
#   chains that merely start with our prefix are handled.
# Part 2, on the testbed (mobile -- router -- server), what the rules do with no daemon bound to
#   the queue: fail-open passes everything; fail-closed lets only SYNs through (so a new
#   connection's SYN/ACK is dropped); loopback, unselected ports and marked packets are never
#   queued; with a listener on the queue (the delay line at 0 ms, which accepts everything) the
#   fail-closed flow works.
# Exit 77 (skipped) when not root.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../testbed/testbed.sh
source "$HERE/../testbed/testbed.sh"
tb_require_root
RULES="$MPROXY_BUILD/tests/testbed/mproxy_rules"
if [[ ! -x $RULES ]]; then
  echo "FAIL: $RULES not built (ninja -C $MPROXY_BUILD mproxy_rules)"
  exit 1
fi

# ---- part 1: rule text round trips in a namespace of our own ----------------------------------
NS=$(printf 'mptb-ipt-%x-%04x' $$ $RANDOM)
ip netns add "$NS" || { echo "FAIL: ip netns add"; exit 1; }
# Nothing runs inside it, so deleting it is the whole cleanup; part 2's testbed brings its own.
cleanup_ns() { ip netns del "$NS" 2>/dev/null; }
trap cleanup_ns EXIT
trap 'cleanup_ns; exit 130' INT
trap 'cleanup_ns; exit 143' TERM

in_ns() { ip netns exec "$NS" "$@"; }
# Both families' rulesets without the timestamps and counters that change between dumps.
dump() {
  { in_ns iptables-save; echo "--- v6"; in_ns ip6tables-save; } | grep -v '^#' |
    sed 's/\[[0-9]*:[0-9]*\]//'
}
# A dump without prefix MPT's chains, their rules and the tagged hook jumps (not with a plain
# "grep -v MPT-": a foreign comment below quotes one of our jumps on purpose).
strip_mpt() { grep -v -E -e '^(:MPT-|-A MPT-)' -e '--comment mproxy -j MPT-(PRE|OUT|PTB)$'; }
same_as_before() {
  local now
  now=$(dump)
  [[ "$now" == "$BEFORE" ]] || { diff <(echo "$BEFORE") <(echo "$now"); return 1; }
}

# Someone else's rules, including a chain named like ours but without the '-' ("MPROXYX"), a
# conntrack INVALID drop (the rule pitfall 7 is about) and a comment that quotes one of our jumps.
for t in iptables ip6tables; do
  in_ns "$t-restore" -w --noflush <<'EOF' || { echo "FAIL: seeding $t"; exit 1; }
*raw
:MPROXYX - [0:0]
:OTHER - [0:0]
-A PREROUTING -p udp --dport 53 -j OTHER
-A PREROUTING -m comment --comment "not ours: -j MPT-PRE" -j MPROXYX
-A OUTPUT -p tcp --dport 22 -j OTHER
COMMIT
*mangle
-A POSTROUTING -p tcp -j TCPMSS --clamp-mss-to-pmtu --tcp-flags SYN,RST SYN
COMMIT
*filter
-A INPUT -m conntrack --ctstate INVALID -j DROP
COMMIT
EOF
done
BEFORE=$(dump)
# shellcheck disable=SC2054  # the commas belong to --ports
OPTS=(--prefix MPT --queue 3 --ports 80,443,5201 --exclude docker0 --fail closed)

tb_check "apply" in_ns "$RULES" apply "${OPTS[@]}"
AFTER=$(dump)
tb_check "apply created our chains in both families" \
  test "$(grep -c -E '^:MPT-(PRE|OUT|Q) ' <<<"$AFTER")" -eq 6
tb_check "apply created the path-MTU chain in both families" \
  test "$(grep -c -E '^:MPT-PTB ' <<<"$AFTER")" -eq 2
tb_check "path-MTU hooks: ICMP frag-needed (v4) and packet-too-big (v6) only" \
  test "$(grep -c -E -e '-p icmp -m icmp --icmp-type 3/4 -m comment --comment mproxy -j MPT-PTB$' \
    -e '-p ipv6-icmp -m icmp6 --icmpv6-type 2 -m comment --comment mproxy -j MPT-PTB$' \
    <<<"$AFTER")" -eq 2
tb_check "apply touched nothing but MPT-* chains and the three tagged jumps" \
  test "$(strip_mpt <<<"$AFTER")" == "$BEFORE"
tb_check "hook jumps carry the mproxy comment" \
  test "$(grep -c -e '-m comment --comment mproxy -j MPT-' <<<"$AFTER")" -eq 6
tb_check "remove" in_ns "$RULES" remove "${OPTS[@]}"
tb_check "apply + remove: iptables-save identical" same_as_before
tb_check "remove again (nothing installed) succeeds" in_ns "$RULES" remove "${OPTS[@]}"
tb_check "  ... and changes nothing" same_as_before

# A crashed daemon: rules applied by one process, swept by a new one that knows only the prefix.
tb_check "crash: apply" in_ns "$RULES" apply "${OPTS[@]}"
out=$(in_ns "$RULES" stale --prefix MPT)
tb_check "crash: stale sweep reports 8 chains ($out)" test "$out" == "removed 8 chain(s)"
tb_check "crash: iptables-save identical" same_as_before
out=$(in_ns "$RULES" stale --prefix MPT)
tb_check "sweep on a clean host removes nothing ($out)" test "$out" == "removed 0 chain(s)"

# Restart without cleanup: the second apply re-declares (flushes) our chains and doubles the hooks.
in_ns "$RULES" apply "${OPTS[@]}" && in_ns "$RULES" apply "${OPTS[@]}"
tb_check "double apply doubled the hooks" \
  test "$(dump | grep -c -e '-j MPT-PRE$')" -eq 4
tb_check "stale sweep removes duplicated hooks" in_ns "$RULES" stale --prefix MPT
tb_check "  ... iptables-save identical" same_as_before

# Two prefixes side by side: sweeping one leaves the other alone.
in_ns "$RULES" apply --prefix MPT --queue 3
in_ns "$RULES" apply --prefix OTHERD --queue 4 --ports 8080 --no-ipv6
WITH_OTHER=$(dump)
tb_check "two prefixes: sweep MPT" in_ns "$RULES" stale --prefix MPT
tb_check "  ... OTHERD intact" \
  test "$(strip_mpt <<<"$WITH_OTHER")" == "$(dump)"
tb_check "  ... remove OTHERD" in_ns "$RULES" remove --prefix OTHERD --queue 4 --ports 8080 --no-ipv6
tb_check "  ... iptables-save identical" same_as_before

# Default prefix MPROXY next to the foreign chain MPROXYX.
tb_check "default prefix: apply" in_ns "$RULES" apply
out=$(in_ns "$RULES" stale)
tb_check "default prefix: sweep removes 8 chains, not MPROXYX ($out)" test "$out" == "removed 8 chain(s)"
tb_check "  ... iptables-save identical (MPROXYX kept)" same_as_before

out=$(in_ns "$RULES" apply --prefix "BAD-PREFIX" 2>&1)
tb_check "invalid prefix refused before touching anything" \
  grep -q "prefix may hold only" <<<"$out"
tb_check "  ... iptables-save identical" same_as_before

cleanup_ns
trap - EXIT INT TERM

# ---- part 2: what the rules do to traffic (no daemon) ----------------------------------------
tb_create --v6 || { tb_fail "tb_create"; tb_finish; }
M4=$(tb_addr mobile wlan0)
S4=$TB_SERVER4
S6=$TB_SERVER6
# Listeners on the server: 5201 (selected) and 5999 (not selected); and one on the mobile itself.
tb_bg server /dev/null python3 -c '
import socket, threading
def serve(fam, addr, port):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(b"hello"); c.close()
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for port in (5201, 5999):
        threading.Thread(target=serve, args=(fam, addr, port), daemon=True).start()
threading.Event().wait()' >/dev/null
tb_bg mobile /dev/null python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"hello"); c.close()' >/dev/null
tb_wait_port server 5201 && tb_wait_port server 5999 && tb_wait_port mobile 5201

# fetch NODE ADDR PORT [MARK]: connect, read "hello"; 0 on success. 2 s timeout.
fetch() {
  tb_exec "$1" python3 -c '
import socket, sys
addr, port, mark = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
if mark:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
s.settimeout(2)
try:
    s.connect((addr, port))
    sys.exit(0 if s.recv(5) == b"hello" else 1)
except OSError as e:
    print(f"{addr}:{port}: {e}")
    sys.exit(1)' "$2" "$3" "${4:-0}"
}
fails() { ! fetch "$@"; }
# Packet counter of the rule in raw chain CHAIN whose text contains PATTERN (v4).
rule_pkts() {
  tb_exec mobile iptables-save -c -t raw | grep -e "-A $1 " | grep -F -e "$2" | head -1 |
    sed 's/^\[\([0-9]*\):.*/\1/'
}

tb_check "no rules: v4 fetch" fetch mobile "$S4" 5201
tb_exec mobile "$RULES" stale --prefix MPT >/dev/null
tb_check "fail-open apply on mobile" tb_exec mobile "$RULES" apply --prefix MPT --queue 3 --ports 5201
tb_check "fail-open, no daemon: v4 connection works (queue bypass)" fetch mobile "$S4" 5201
tb_check "fail-open, no daemon: v6 connection works" fetch mobile "$S6" 5201
q=$(rule_pkts MPT-Q NFQUEUE)
tb_check "fail-open: packets went through the queue rule ($q)" test "${q:-0}" -gt 0
# Path MTU: a frag-needed from the router reaches the PTB chain's queue rule (and, with no
# daemon, bypasses it), an echo request does not.
send_icmp() {  # TYPE CODE: an ICMP message from the router to the mobile
  tb_exec router python3 -c '
import socket, struct, sys
def csum(b):
    b += b"\0" * (len(b) % 2); s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
t, c, dst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
quote = bytes.fromhex("450005dc000040004006000000000000000000009c40145101020305")
msg = struct.pack("!BBHHH", t, c, 0, 0, 1280) + quote
msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(msg, (dst, 0))' "$1" "$2" "$M4"
}
ptb0=$(rule_pkts MPT-PTB NFQUEUE)
send_icmp 8 0
ptb1=$(rule_pkts MPT-PTB NFQUEUE)
send_icmp 3 4
send_icmp 3 4
ptb2=$(rule_pkts MPT-PTB NFQUEUE)
tb_check "path MTU: echo not queued (${ptb0:-0} -> ${ptb1:-0}), frag-needed queued (-> ${ptb2:-0})" \
  test "$((${ptb1:-0} - ${ptb0:-0}))" -eq 0 -a "$((${ptb2:-0} - ${ptb1:-0}))" -eq 2
tb_check "remove" tb_exec mobile "$RULES" remove --prefix MPT --queue 3 --ports 5201

CLOSED=(--prefix MPT --queue 3 --ports 5201 --fail closed)
tb_check "fail-closed apply on mobile" tb_exec mobile "$RULES" apply "${CLOSED[@]}"
syn0=$(rule_pkts MPT-Q "--queue-bypass")
tb_check "fail-closed, no daemon: v4 connection to a selected port fails" fails mobile "$S4" 5201
tb_check "fail-closed, no daemon: v6 connection to a selected port fails" fails mobile "$S6" 5201
syn1=$(rule_pkts MPT-Q "--queue-bypass")
tb_check "  ... its SYNs took the bypass rule ($syn0 -> $syn1)" test "$((syn1 - syn0))" -ge 1
tb_check "fail-closed: unselected port still works" fetch mobile "$S4" 5999
tb_check "fail-closed: loopback to own address on a selected port works" fetch mobile "$M4" 5201
mark0=$(rule_pkts MPT-OUT "--mark 0x4d50/0x4d50 -j RETURN")
q0=$(rule_pkts MPT-Q "-j CT --notrack")
fails mobile "$S4" 5201 0x4d50 >/dev/null  # SYN/ACK (unmarked, inbound) is still dropped
mark1=$(rule_pkts MPT-OUT "--mark 0x4d50/0x4d50 -j RETURN")
q1=$(rule_pkts MPT-Q "-j CT --notrack")
tb_check "marked packets skip the queue (mark rule +$((mark1 - mark0)), queue chain +$((q1 - q0)) from inbound only)" \
  test "$((mark1 - mark0))" -ge 1

# A listener on the queue: the delay line with 0 ms accepts everything, like an idle daemon.
if [[ -x $TB_DELAYLINE ]]; then
  tb_bg mobile "$TB_DIR/q3.log" "$TB_DELAYLINE" --queue 3 --delay-ms 0 >/dev/null
  dl=$TB_BG_PID
  for _ in $(seq 100); do grep -q ready "$TB_DIR/q3.log" && break; sleep 0.02; done
  tb_check "fail-closed with a listener on the queue: v4 connection works" fetch mobile "$S4" 5201
  tb_check "fail-closed with a listener on the queue: v6 connection works" fetch mobile "$S6" 5201
  tb_stop "$dl"
  tb_check "listener gone again: connection fails closed" fails mobile "$S4" 5201
else
  tb_skip "delay line not built: no queue-listener check"
fi
tb_check "remove (fail-closed)" tb_exec mobile "$RULES" remove "${CLOSED[@]}"
tb_check "after remove: v4 connection works" fetch mobile "$S4" 5201
tb_check "after remove: no MPT chain left on mobile" \
  bash -c "! { ip netns exec $(tb_ns mobile) iptables-save; ip netns exec $(tb_ns mobile) ip6tables-save; } | grep -q MPT-"

tb_cleanup
tb_check "namespaces removed" bash -c "! ip netns list | grep -q -e '$NS' -e '$TB_ID'"
tb_finish
