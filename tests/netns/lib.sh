# shellcheck shell=bash
# Helpers shared by the real-kernel tests: start/stop mproxyd inside a testbed node, read the
# native stack's MPTcpExt counters, run the traffic peer and compare what both ends hashed.
# Source after tests/testbed/testbed.sh.

MPROXY_SRC=${MPROXY_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MPROXY_BUILD=${MPROXY_BUILD:-$MPROXY_SRC/build}
MPROXYD=$MPROXY_BUILD/proxy/mproxyd
MPROXYCTL=$MPROXY_BUILD/cli/mproxyctl
PEER=$MPROXY_SRC/tests/netns/peer.py

# The counters a healthy interop run leaves at zero on the native side (interop reference §2.4).
MPTCP_ASSERT_ZERO="MPCapableFallbackACK MPCapableFallbackSYNACK MPCapableDataFallback
MPFallbackTokenInit MPCapableEndpAttempt MPJoinNoTokenFound MPJoinSynAckHMacFailure
MPJoinAckHMacFailure MPJoinRejected MismatchPortSynRx MismatchPortAckRx DSSNotMatching
DSSNoMatchTCP DSSCorruptionFallback DSSCorruptionReset DssFallback FallbackFailed InfiniteMapRx
InfiniteMapTx DataCsumErr NoDSSInWindow AddAddrDrop RmAddrDrop MPFailTx MPFailRx MPRstTx MPRstRx
Blackhole MPCapableSYNTXDrop MPCapableSYNTXDisabled SimultConnectFallback MD5SigFallback"

# proxy_start NODE NAME ARGS...: mproxyd inside NODE with its control socket at $TB_DIR/NAME.sock;
# waits until it answers. Sets PROXY_PID_<NAME>.
proxy_start() {
  local node=$1 name=$2
  shift 2
  local sock=$TB_DIR/$name.sock
  # tb_bg runs in this shell (not in $(...)) so the daemon is our child and `wait` gets its status.
  tb_bg "$node" "$TB_DIR/$name.log" "$MPROXYD" --control-socket "$sock" \
    --rule-prefix "MPX${name^^}" "$@" >/dev/null
  local pid=$TB_BG_PID
  printf -v "PROXY_PID_$name" '%s' "$pid"
  local i
  for i in $(seq 100); do
    if tb_exec "$node" "$MPROXYCTL" -s "$sock" status >/dev/null 2>&1; then return 0; fi
    if [[ ! -e /proc/$pid ]] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      tb_log "mproxyd $name died at start:"
      cat "$TB_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  tb_log "mproxyd $name did not answer"
  return 1
}

# proxy_ctl NODE NAME ARGS...: mproxyctl against that daemon.
proxy_ctl() {
  local node=$1 name=$2
  shift 2
  tb_exec "$node" "$MPROXYCTL" -s "$TB_DIR/$name.sock" "$@"
}

# proxy_stop NAME [SIGNAL]: send SIGNAL (default TERM), wait up to 10 s; returns the daemon's exit
# status (1 if it had to be killed).
proxy_stop() {
  local name=$1 var="PROXY_PID_$1" sig=${2:-TERM}
  local pid=${!var} i rc
  [[ -n "$pid" ]] || return 0
  kill -"$sig" "$pid" 2>/dev/null
  for i in $(seq 100); do
    [[ -e /proc/$pid ]] || break
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
    sleep 0.1
  done
  if [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    tb_log "mproxyd $name ignored SIG$sig"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    printf -v "$var" '%s' ""
    return 1
  fi
  wait "$pid"
  rc=$?
  printf -v "$var" '%s' ""
  [[ $rc == 0 ]] || tb_log "mproxyd $name exited with status $rc: $(tail -3 "$TB_DIR/$name.log")"
  return $rc
}

# proxy_counter NODE NAME COUNTER: one counter from `mproxyctl -j stats`.
proxy_counter() {
  proxy_ctl "$1" "$2" -j stats | python3 -c '
import json, sys
want = sys.argv[1]
def walk(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == want and isinstance(v, int): print(v); sys.exit(0)
            walk(v)
    elif isinstance(x, list):
        for v in x: walk(v)
walk(json.load(sys.stdin)); print(0)' "$3"
}

# mptcp_sysctl NODE: sysctls a native peer needs in tests (interop reference §6 rule 13): no
# blackhole detection (a proxy bug must not disable MPTCP for an hour), fast ADD_ADDR retries.
mptcp_sysctl() {
  tb_exec "$1" sysctl -qw net.mptcp.enabled=1
  tb_exec "$1" sysctl -qw net.mptcp.blackhole_timeout=0 2>/dev/null || true
  tb_exec "$1" sysctl -qw net.mptcp.add_addr_timeout=2 2>/dev/null || true
}

# mptcp_counter NODE NAME: absolute MPTcpExt<NAME> of the node's namespace (fresh namespaces start
# at zero, so absolute values are this test's).
mptcp_counter() {
  tb_exec "$1" cat /proc/net/netstat | awk -v want="$2" '
    $1 == "MPTcpExt:" && !hdr { for (i = 2; i <= NF; i++) name[i] = $i; hdr = 1; next }
    $1 == "MPTcpExt:" && hdr  { for (i = 2; i <= NF; i++) if (name[i] == want) { print $i; found = 1 } }
    END { if (!found) print 0 }'
}

# tcp_ext NODE NAME: absolute TcpExt<NAME> of the node's namespace (the plain TCP stack's view:
# TCPSackRecovery, TCPTimeouts, ...).
tcp_ext() {
  tb_exec "$1" cat /proc/net/netstat | awk -v want="$2" '
    $1 == "TcpExt:" && !hdr { for (i = 2; i <= NF; i++) name[i] = $i; hdr = 1; next }
    $1 == "TcpExt:" && hdr  { for (i = 2; i <= NF; i++) if (name[i] == want) { print $i; found = 1 } }
    END { if (!found) print 0 }'
}

# mptcp_assert_zero NODE [EXCEPT...]: every counter of the assert-zero set is 0.
mptcp_assert_zero() {
  local node=$1
  shift
  local bad="" c v
  for c in $MPTCP_ASSERT_ZERO; do
    [[ " $* " == *" $c "* ]] && continue
    v=$(mptcp_counter "$node" "$c")
    [[ "$v" == 0 ]] || bad+=" $c=$v"
  done
  if [[ -z "$bad" ]]; then
    tb_pass "$node: MPTcpExt assert-zero set all 0"
  else
    tb_fail "$node: MPTcpExt counters not zero:$bad"
  fi
}

# expect_counter NODE NAME VALUE: MPTcpExt<NAME> == VALUE.
expect_counter() {
  local v
  v=$(mptcp_counter "$1" "$2")
  if [[ "$v" == "$3" ]]; then
    tb_pass "$1: MPTcpExt$2 = $3"
  else
    tb_fail "$1: MPTcpExt$2 = $v, expected $3"
  fi
}

# peer_server NODE NAME ARGS...: background peer server; waits until it listens. Output (one JSON
# line per connection) goes to $TB_DIR/NAME.json.
peer_server() {
  local node=$1 name=$2
  shift 2
  rm -f "$TB_DIR/$name.ready"
  tb_bg "$node" "$TB_DIR/$name.json" python3 "$PEER" server --ready "$TB_DIR/$name.ready" "$@" \
    >/dev/null
  echo "$TB_BG_PID" >"$TB_DIR/$name.pid"
  local i
  for i in $(seq 100); do
    [[ -f "$TB_DIR/$name.ready" ]] && return 0
    sleep 0.05
  done
  tb_log "peer server $name did not start"
  return 1
}

# peer_wait NAME [SECONDS]: wait for a background peer to exit.
peer_wait() {
  local pid
  pid=$(cat "$TB_DIR/$1.pid")
  local i limit=$((${2:-120} * 10))
  for ((i = 0; i < limit; i++)); do
    if [[ ! -e /proc/$pid ]] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      return 0
    fi
    sleep 0.1
  done
  tb_log "peer $1 still running after ${2:-120}s"
  return 1
}

# peer_client NODE NAME ARGS...: foreground peer client; output to $TB_DIR/NAME.json.
peer_client() {
  local node=$1 name=$2
  shift 2
  tb_exec "$node" python3 "$PEER" client "$@" >"$TB_DIR/$name.json"
}

# check_transfer CLIENT_JSON SERVER_JSON N [mptcp-side]: both directions of N connections arrived
# intact (sha256 equal, byte counts as sent). With a 4th argument "client" or "server", that side's
# MPTCP_INFO must show a real MPTCP connection (no fallback, remote key received).
check_transfer() {
  python3 - "$TB_DIR/$1.json" "$TB_DIR/$2.json" "$3" "${4:-}" <<'EOF'
import json, sys
cli = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
srv = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
n, mp_side = int(sys.argv[3]), sys.argv[4]
errs = [r for r in cli + srv if "error" in r or "tx_error" in r or "rx_error" in r]
if errs:
    sys.exit("errors: %s" % errs[:3])
if len(cli) != n or len(srv) != n:
    sys.exit("expected %d connections, got client %d server %d" % (n, len(cli), len(srv)))
def key(r, d): return (r[d + "_bytes"], r[d + "_sha256"])
up = sorted(key(r, "tx") for r in cli) == sorted(key(r, "rx") for r in srv)
down = sorted(key(r, "tx") for r in srv) == sorted(key(r, "rx") for r in cli)
if not (up and down):
    sys.exit("hash mismatch: up=%s down=%s\nclient=%s\nserver=%s" % (up, down, cli[:2], srv[:2]))
if mp_side:
    side = cli if mp_side == "client" else srv
    bad = [r["mptcp"] for r in side if not r["mptcp"] or r["mptcp"]["fallback"]
           or not r["mptcp"]["remote_key_received"]]
    if bad:
        sys.exit("MPTCP_INFO on the %s shows no MPTCP: %s" % (mp_side, bad[:3]))
EOF
}

# counter_snapshot NODE: remember every MPTcpExt counter of NODE; expect_delta compares against it.
declare -gA _SNAP
counter_snapshot() {
  local node=$1 k v
  while read -r k v; do _SNAP[$node/$k]=$v; done < <(tb_exec "$node" cat /proc/net/netstat | awk '
    $1 == "MPTcpExt:" && !hdr { for (i = 2; i <= NF; i++) name[i] = $i; hdr = 1; next }
    $1 == "MPTcpExt:" && hdr  { for (i = 2; i <= NF; i++) print name[i], $i }')
}

# expect_delta NODE NAME VALUE: MPTcpExt<NAME> moved by exactly VALUE since counter_snapshot.
expect_delta() {
  local now before=${_SNAP[$1/$2]:-0}
  now=$(mptcp_counter "$1" "$2")
  if [[ $((now - before)) == "$3" ]]; then
    tb_pass "$1: MPTcpExt$2 +$3"
  else
    tb_fail "$1: MPTcpExt$2 moved by $((now - before)), expected $3"
  fi
}

# proxy_conn_count NODE NAME: connections the daemon still tracks (`mproxyctl -j conn show`).
proxy_conn_count() {
  proxy_ctl "$1" "$2" -j conn show | python3 -c '
import json, sys
d = json.load(sys.stdin)
conns = d.get("connections", d) if isinstance(d, dict) else d
print(len(conns))'
}

# conn_sum NODE NAME FIELD...: the sum of FIELDs (e.g. bytes_rx bytes_tx) of the daemon's
# established connection, 0 while there is none (a closed one may still linger for a while).
conn_sum() {
  local node=$1 name=$2
  shift 2
  proxy_ctl "$node" "$name" -j conn show 2>/dev/null | python3 -c '
import json, sys
c = [c for c in json.load(sys.stdin).get("connections", []) if c["state"] == "established"]
print(sum(int(c[0][f]) for f in sys.argv[1:]) if c else 0)' "$@" 2>/dev/null || echo 0
}

# wait_conn_bytes NODE NAME BYTES: wait (30 s at most) until the established connection carried
# BYTES (received + sent).
wait_conn_bytes() {
  local i
  for i in $(seq 600); do
    (($(conn_sum "$1" "$2" bytes_rx bytes_tx) >= $3)) && return 0
    sleep 0.05
  done
  return 1
}

# if_bytes NODE IF: bytes received + sent on NODE's interface IF.
if_bytes() { echo $(($(tb_counter "$1" "$2" rx bytes) + $(tb_counter "$1" "$2" tx bytes))); }

# wait_conns_gone NODE NAME SECONDS: poll until the daemon tracks no connection.
wait_conns_gone() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ $(proxy_conn_count "$1" "$2" 2>/dev/null) == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}

# check_stop NAME [SIGNAL]: proxy_stop, reported as PASS/FAIL. Not through tb_check: that runs its
# command in a subshell, where `wait` cannot collect our child's exit status.
check_stop() {
  if proxy_stop "$@"; then
    tb_pass "mproxyd $1 stopped on SIG${2:-TERM} with status 0"
  else
    tb_fail "mproxyd $1 did not stop cleanly on SIG${2:-TERM}"
  fi
}

# save_rules NODE: the node's iptables and ip6tables rules and user chains, one per line, prefixed
# by the table. Tables holding nothing but empty built-in chains are left out: the kernel keeps a
# table once it was used, and an empty table is not a leftover rule or chain.
save_rules() {
  local t
  for t in iptables ip6tables; do
    tb_exec "$1" "$t-save" | awk -v fam="$t" '
      /^\*/ { table = substr($0, 2); next }
      /^:/ { split($0, f, " "); c = substr(f[1], 2);
             if (c !~ /^(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING)$/ || f[2] != "ACCEPT") print fam, table, $0
             next }
      /^-A/ { print fam, table, $0 }'
  done
}

# netns_test_begin [tb_create args]: the common start of a real-kernel test: root or skip (77),
# a fresh testbed, the native MPTCP sysctls on the server.
netns_test_begin() {
  tb_require_root
  tb_create "$@"
  mptcp_sysctl server
}

# proxy_start_or_finish NODE NAME ARGS...: proxy_start, and end the test (FAIL) if it cannot.
proxy_start_or_finish() {
  proxy_start "$@" && return 0
  tb_fail "mproxyd $2 starts on $1"
  tb_finish
}
