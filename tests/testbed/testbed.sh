# shellcheck shell=bash
# shellcheck disable=SC2034  # TB_SERVER4/6, TB_TOPO, ...: read by the sourcing tests
# testbed.sh: namespaced topologies for mproxy's real-kernel tests. Source it from a bash script:
#
#   source "${MPROXY_SRC:-$(git rev-parse --show-toplevel)}/tests/testbed/testbed.sh"
#   tb_require_root                       # exits 77 (ctest "skipped") when not root
#   tb_create --v6                        # mobile (wlan0, eth1) -- router -- server
#   tb_ping mobile "$TB_SERVER4" -c 3
#   tb_delay router r-wlan0 30            # 30 ms one way on the wlan0 path (downlink)
#   tb_check "something" cmd args...      # prints PASS/FAIL, counts failures
#   tb_finish                             # summary; exit 1 if anything failed
#
# Topologies (all addresses from 198.18.0.0/15 and 2001:db8::/32, only inside our namespaces):
#
#   --topo router (default)
#     mobile wlan0 198.18.1.2/24 2001:db8:1::2/64 <-> router r-wlan0 198.18.1.1 2001:db8:1::1
#     mobile eth1  198.18.2.2/24 2001:db8:2::2/64 <-> router r-eth1  198.18.2.1 2001:db8:2::1
#     server eth0  198.18.3.2/24 2001:db8:3::2/64 <-> router r-srv   198.18.3.1 2001:db8:3::1
#   --topo direct (two paths, no router)
#     mobile wlan0 198.18.1.2/24 2001:db8:1::2/64 <-> server eth0 198.18.1.1 2001:db8:1::1
#     mobile eth1  198.18.2.2/24 2001:db8:2::2/64 <-> server eth1 198.18.2.1 2001:db8:2::1
#   $TB_SERVER4 / $TB_SERVER6: the server address tests connect to (198.18.3.2 or 198.18.1.1).
#
# The mobile host has a default route via wlan0 (metric 100) and one via eth1 (metric 200), plus
# source routing (ip rule from <addr> lookup 101/102), so a socket bound to eth1's address leaves
# through eth1. IPv6 addresses use nodad (usable at once) and survive link down
# (keep_addr_on_down); `tb_link IF up` restores the routes the kernel dropped.
#
# Names are unique per instance (mptb-<pid>-<random>-<node>), so tests run in parallel. tb_cleanup
# runs on EXIT, INT and TERM: it kills every process in our namespaces (ip netns pids) and deletes
# them; it is idempotent. Register extra cleanup with tb_atexit, not with trap (that would replace
# ours). The root namespace's firewall, routes and sysctls are never touched: every command runs
# inside one of our namespaces (ip -n / ip netns exec).
#
# Environment:
#   MPROXY_BUILD  build dir holding tests/testbed/delayline (default: <repo>/build)
#   TB_OFFLOAD    on (default) | off: GSO/TSO/GRO on every veth at creation (tb_offload to switch)
#   TB_KEEP=1     keep the log dir ($TB_DIR) after cleanup
#   TB_VERBOSE=1  echo every namespaced command
#
# Functions (NODE is mobile, router or server; IF an interface name inside NODE):
#   tb_create [--v6] [--topo router|direct] [--offload on|off]
#   tb_ns NODE                        print the namespace name
#   tb_exec NODE CMD...               run CMD inside NODE
#   tb_bg NODE LOGFILE CMD...         start CMD in the background inside NODE; prints its pid,
#                                     also in $TB_BG_PID
#   tb_stop PID [SECONDS]             TERM (then KILL) a tb_bg process and wait until it is gone
#   tb_sysctl NODE key=value...       sysctls inside NODE (e.g. larger net.ipv4.tcp_rmem)
#   tb_addr NODE IF [4|6]             print IF's address (no prefix length)
#   tb_ifaces NODE                    print NODE's test interfaces
#   tb_link NODE IF up|down           admin state; `up` restores IF's routes
#   tb_delay NODE IF MS               egress delay on IF (NFQUEUE delay line); 0 removes it
#                                     (queues 1000 and up; leave those free for the testbed)
#   tb_loss NODE IF PCT               random egress loss on IF (iptables statistic); 0 removes it
#                                     NB: with offload on, netfilter sees GSO/GRO super-packets
#                                     (up to ~45 segments), so TCP sees bursty loss; for per-segment
#                                     loss use TB_OFFLOAD=off or tb_offload on the path.
#   tb_rate NODE IF RATE|off          egress rate limit on IF (tc tbf), RATE like 20mbit
#   tb_offload NODE IF|all on|off     GSO/TSO/GRO
#   tb_counter NODE IF rx|tx [packets|bytes]
#   tb_ping NODE DEST [-c N] [-i S] [-W S] [-I SRC] [-q]   ICMP echo (tb_ping.py)
#   tb_ping_stats NODE DEST ARGS...   prints "loss_pct min avg max" (ms)
#   tb_wait_port NODE PORT [SECONDS]  wait for a TCP listener
#   tb_iperf CLIENT SERVER DEST SECONDS [client args...]   prints received Mbit/s
#   tb_atexit CMD...                  run CMD at cleanup (before the namespaces go)
#   tb_cleanup                        tear everything down (also automatic)
#   tb_require_root, tb_pass, tb_fail, tb_skip, tb_check, tb_finish, tb_log

TB_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TB_REPO="$(cd "$TB_SRC_DIR/../.." && pwd)"
: "${MPROXY_BUILD:=$TB_REPO/build}"
: "${TB_OFFLOAD:=on}"
TB_DELAYLINE="${TB_DELAYLINE:-$MPROXY_BUILD/tests/testbed/delayline}"
TB_PING="$TB_SRC_DIR/tb_ping.py"

TB_ID=""
TB_DIR=""
TB_TOPO=""
TB_V6=0
TB_SERVER4=""
TB_SERVER6=""
TB_NODES=()
TB_NAMESPACES=()
TB_ATEXIT=()
TB_CLEANED=1
TB_FAILURES=0
TB_PASSES=0
TB_NEXT_QUEUE=1000
TB_BG_PID=""
declare -gA TB_ADDR4=() TB_ADDR6=() TB_ROUTES=()

tb_log() { echo "[testbed] $*" >&2; }
tb_pass() { TB_PASSES=$((TB_PASSES + 1)); echo "PASS: $*"; }
tb_fail() { TB_FAILURES=$((TB_FAILURES + 1)); echo "FAIL: $*"; }
tb_skip() { echo "SKIP: $*"; }

# tb_check NAME CMD...: PASS if CMD succeeds, else FAIL (with CMD's output).
tb_check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    tb_pass "$name"
  else
    tb_fail "$name"
    [[ -n "$out" ]] && printf '    %s\n' "${out//$'\n'/$'\n'    }"
  fi
  return 0
}

tb_finish() {
  echo "== $TB_PASSES passed, $TB_FAILURES failed"
  ((TB_FAILURES == 0)) || exit 1
  exit 0
}

tb_require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: needs root (network namespaces)"
    exit 77
  fi
}

# ---------------------------------------------------------------------------------------------
# Names and execution.

tb_ns() {
  local node=$1 n
  for n in "${TB_NODES[@]}"; do
    if [[ $n == "$node" ]]; then
      echo "$TB_ID-$node"
      return 0
    fi
  done
  tb_log "unknown node '$node' (have: ${TB_NODES[*]:-none})"
  return 1
}

tb_exec() {
  local ns
  ns=$(tb_ns "$1") || return 1
  shift
  [[ -n ${TB_VERBOSE:-} ]] && tb_log "$ns: $*"
  ip netns exec "$ns" "$@"
}

# tb_bg NODE LOGFILE CMD...: background process inside NODE; prints its pid and sets TB_BG_PID
# (ip netns exec execs the command, so the pid is the command's). Call it directly (not in $(...))
# and use $TB_BG_PID when you want to `wait` for its exit status: inside $(...) it is a child of
# the subshell. Killed by tb_cleanup with everything else in NODE.
tb_bg() {
  local ns log=$2
  ns=$(tb_ns "$1") || return 1
  shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
  TB_BG_PID=$!
  echo "$TB_BG_PID"
}

# tb_stop PID [SECONDS]: SIGTERM, wait until it is gone (or a zombie), then SIGKILL. For processes
# started with tb_bg; works whether or not they are children of this shell.
tb_stop() {
  local pid=$1 secs=${2:-2} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq $((secs * 50))); do
    [[ -e /proc/$pid ]] || break
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
    sleep 0.02
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

tb_addr() {
  local node=$1 ifname=$2 fam=${3:-4} v
  if [[ $fam == 6 ]]; then v=${TB_ADDR6[$node/$ifname]:-}; else v=${TB_ADDR4[$node/$ifname]:-}; fi
  if [[ -z $v ]]; then
    tb_log "no IPv$fam address for $node/$ifname"
    return 1
  fi
  echo "$v"
}

tb_ifaces() {
  local node=$1 k
  for k in "${!TB_ADDR4[@]}"; do [[ $k == "$node"/* ]] && echo "${k#*/}"; done | sort
}

tb_atexit() { TB_ATEXIT+=("$*"); }

# ---------------------------------------------------------------------------------------------
# Construction.

# tb_sysctl NODE key=value...: per-namespace sysctls only (net.core.*mem_max are not per-netns).
tb_sysctl() {
  local node=$1
  shift
  tb_exec "$node" sysctl -qw "$@" >/dev/null
}

_tb_add_node() {
  local node=$1 ns="$TB_ID-$1"
  ip netns add "$ns" || return 1
  TB_NODES+=("$node")
  TB_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
  # Multi-homed hosts need loose (here: no) reverse-path filtering; new namespaces usually start
  # with 0 but a host's devconf_inherit_init_net could hand them the root's value.
  tb_sysctl "$node" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  tb_sysctl "$node" net.ipv6.conf.all.keep_addr_on_down=1 \
    net.ipv6.conf.default.keep_addr_on_down=1 net.ipv6.conf.all.accept_dad=0 \
    net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.accept_ra=0 \
    net.ipv6.conf.all.accept_ra=0
}

# _tb_link NODE_A IF_A NODE_B IF_B: a veth pair created directly inside the two namespaces.
_tb_link() {
  local na=$1 ia=$2 nb=$3 ib=$4
  ip -n "$TB_ID-$na" link add "$ia" type veth peer name "$ib" netns "$TB_ID-$nb" || return 1
  ip -n "$TB_ID-$na" link set "$ia" up
  ip -n "$TB_ID-$nb" link set "$ib" up
  tb_offload "$na" "$ia" "$TB_OFFLOAD" >/dev/null
  tb_offload "$nb" "$ib" "$TB_OFFLOAD" >/dev/null
}

# _tb_ip NODE IF ADDR4/PLEN [ADDR6/PLEN]
_tb_ip() {
  local node=$1 ifname=$2 a4=$3 a6=${4:-} ns="$TB_ID-$1"
  ip -n "$ns" addr add "$a4" dev "$ifname" || return 1
  TB_ADDR4[$node/$ifname]=${a4%/*}
  if ((TB_V6)) && [[ -n $a6 ]]; then
    ip -n "$ns" -6 addr add "$a6" dev "$ifname" nodad || return 1
    TB_ADDR6[$node/$ifname]=${a6%/*}
  fi
}

# _tb_route NODE IF ARGS...: `ip -n NS ARGS` now, and again whenever `tb_link NODE IF up` runs
# (an admin-down interface loses its gateway routes).
_tb_route() {
  local node=$1 ifname=$2
  shift 2
  TB_ROUTES[$node/$ifname]+="$*"$'\n'
  ip -n "$TB_ID-$node" "$@"
}

# Mobile-side routing for one path: default route in the main table (metric) and a source-routed
# table so a socket bound to this interface's address leaves through it.
_tb_mobile_path() {
  local ifname=$1 gw4=$2 gw6=$3 table=$4 metric=$5 a4 a6
  a4=${TB_ADDR4[mobile/$ifname]}
  _tb_route mobile "$ifname" -4 route replace default via "$gw4" dev "$ifname" metric "$metric"
  _tb_route mobile "$ifname" -4 route replace "${gw4%.*}.0/24" dev "$ifname" src "$a4" table "$table"
  _tb_route mobile "$ifname" -4 route replace default via "$gw4" dev "$ifname" table "$table"
  ip -n "$TB_ID-mobile" -4 rule add from "$a4" lookup "$table" pref "$table"
  if ((TB_V6)); then
    a6=${TB_ADDR6[mobile/$ifname]}
    _tb_route mobile "$ifname" -6 route replace default via "$gw6" dev "$ifname" metric "$metric"
    _tb_route mobile "$ifname" -6 route replace "${gw6%::*}::/64" dev "$ifname" table "$table"
    _tb_route mobile "$ifname" -6 route replace default via "$gw6" dev "$ifname" table "$table"
    ip -n "$TB_ID-mobile" -6 rule add from "$a6" lookup "$table" pref "$table"
  fi
}

tb_create() {
  local topo=router
  TB_V6=0
  while (($#)); do
    case $1 in
      --v6) TB_V6=1 ;;
      --topo) topo=$2; shift ;;
      --offload) TB_OFFLOAD=$2; shift ;;
      *) tb_log "tb_create: unknown option $1"; return 1 ;;
    esac
    shift
  done
  [[ $topo == router || $topo == direct ]] || { tb_log "tb_create: bad --topo $topo"; return 1; }
  if ((!TB_CLEANED)); then
    tb_log "tb_create: a testbed exists already ($TB_ID); tb_cleanup first"
    return 1
  fi
  TB_ID=$(printf 'mptb-%x-%04x%04x' $$ $RANDOM $RANDOM)
  TB_DIR=$(mktemp -d "/tmp/$TB_ID.XXXXXX") || return 1
  TB_TOPO=$topo
  TB_NODES=() TB_NAMESPACES=() TB_ATEXIT=()
  TB_ADDR4=() TB_ADDR6=() TB_ROUTES=()
  TB_CLEANED=0
  trap tb_cleanup EXIT
  trap '_tb_on_signal 130' INT
  trap '_tb_on_signal 143' TERM

  if [[ $topo == router ]]; then
    _tb_add_node mobile && _tb_add_node router && _tb_add_node server || return 1
    tb_sysctl router net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    _tb_link mobile wlan0 router r-wlan0 && _tb_link mobile eth1 router r-eth1 &&
      _tb_link server eth0 router r-srv || return 1
    _tb_ip mobile wlan0 198.18.1.2/24 2001:db8:1::2/64 &&
      _tb_ip router r-wlan0 198.18.1.1/24 2001:db8:1::1/64 &&
      _tb_ip mobile eth1 198.18.2.2/24 2001:db8:2::2/64 &&
      _tb_ip router r-eth1 198.18.2.1/24 2001:db8:2::1/64 &&
      _tb_ip server eth0 198.18.3.2/24 2001:db8:3::2/64 &&
      _tb_ip router r-srv 198.18.3.1/24 2001:db8:3::1/64 || return 1
    _tb_route server eth0 -4 route replace default via 198.18.3.1 dev eth0
    ((TB_V6)) && _tb_route server eth0 -6 route replace default via 2001:db8:3::1 dev eth0
    TB_SERVER4=198.18.3.2
    TB_SERVER6=$( ((TB_V6)) && echo 2001:db8:3::2)
  else
    _tb_add_node mobile && _tb_add_node server || return 1
    _tb_link mobile wlan0 server eth0 && _tb_link mobile eth1 server eth1 || return 1
    _tb_ip mobile wlan0 198.18.1.2/24 2001:db8:1::2/64 &&
      _tb_ip server eth0 198.18.1.1/24 2001:db8:1::1/64 &&
      _tb_ip mobile eth1 198.18.2.2/24 2001:db8:2::2/64 &&
      _tb_ip server eth1 198.18.2.1/24 2001:db8:2::1/64 || return 1
    # The server answers the mobile's eth1 address through eth1 via the connected route; a
    # packet for 198.18.1.1 arriving on eth1 is accepted (weak host model, rp_filter off).
    TB_SERVER4=198.18.1.1
    TB_SERVER6=$( ((TB_V6)) && echo 2001:db8:1::1)
  fi
  _tb_mobile_path wlan0 198.18.1.1 2001:db8:1::1 101 100 &&
    _tb_mobile_path eth1 198.18.2.1 2001:db8:2::1 102 200 || return 1
  tb_log "created $TB_TOPO testbed $TB_ID (v6=$TB_V6, offload=$TB_OFFLOAD, logs $TB_DIR)"
}

# ---------------------------------------------------------------------------------------------
# Link properties.

tb_link() {
  local node=$1 ifname=$2 state=$3 ns line
  ns=$(tb_ns "$node") || return 1
  case $state in
    down) ip -n "$ns" link set "$ifname" down ;;
    up)
      ip -n "$ns" link set "$ifname" up || return 1
      # The kernel deleted the routes through IF when it went down; put them back.
      while IFS= read -r line; do
        [[ -z $line ]] && continue
        for _ in 1 2 3 4 5 6 7 8 9 10; do
          # shellcheck disable=SC2086  # stored argument lists hold no quoting
          ip -n "$ns" $line 2>/dev/null && break
          sleep 0.05
        done
      done <<<"${TB_ROUTES[$node/$ifname]:-}"
      ;;
    *) tb_log "tb_link: state must be up or down"; return 1 ;;
  esac
}

tb_offload() {
  local node=$1 ifname=$2 mode=$3 i
  [[ $mode == on || $mode == off ]] || { tb_log "tb_offload: on or off"; return 1; }
  if [[ $ifname == all ]]; then
    for i in $(tb_ifaces "$node"); do tb_offload "$node" "$i" "$mode" || return 1; done
    return 0
  fi
  tb_exec "$node" ethtool -K "$ifname" gso "$mode" tso "$mode" gro "$mode"
}

tb_counter() {
  local node=$1 ifname=$2 dir=$3 what=${4:-packets}
  tb_exec "$node" cat "/sys/class/net/$ifname/statistics/${dir}_$what"
}

# Both families' rules for the namespaced netfilter helpers (the v6 table exists even without
# --v6 addresses, and a rule there is harmless).
_tb_ipt() {  # NODE ARGS... (run for iptables and ip6tables)
  local node=$1
  shift
  tb_exec "$node" iptables -w "$@" && tb_exec "$node" ip6tables -w "$@"
}

tb_loss() {
  local node=$1 ifname=$2 pct=$3 state prob
  state="$TB_DIR/loss.$node.$ifname"
  if [[ -f $state ]]; then
    _tb_ipt "$node" -t mangle -D POSTROUTING -o "$ifname" -m statistic --mode random \
      --probability "$(cat "$state")" -j DROP || return 1
    rm -f "$state"
  fi
  if awk -v p="$pct" 'BEGIN { exit !(p > 0) }'; then
    prob=$(awk -v p="$pct" 'BEGIN { if (p > 100) p = 100; printf "%.6f", p / 100 }')
    # Inserted first: a packet that is lost is never queued to a delay line.
    _tb_ipt "$node" -t mangle -I POSTROUTING 1 -o "$ifname" -m statistic --mode random \
      --probability "$prob" -j DROP || return 1
    echo "$prob" >"$state"
  fi
}

_tb_rate_bps() {  # "20mbit" -> bits per second
  awk -v r="$1" 'BEGIN {
    n = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
    m["bit"]=1; m["kbit"]=1e3; m["mbit"]=1e6; m["gbit"]=1e9; m["bps"]=8; m["kbps"]=8e3;
    m["mbps"]=8e6; m["gbps"]=8e9; m[""]=1
    if (!(u in m) || n <= 0) exit 1
    printf "%.0f", n * m[u] }'
}

tb_rate() {
  local node=$1 ifname=$2 rate=$3 bps burst
  if [[ $rate == off ]]; then
    tb_exec "$node" tc qdisc del dev "$ifname" root 2>/dev/null || true
    return 0
  fi
  bps=$(_tb_rate_bps "$rate") || { tb_log "tb_rate: bad rate '$rate' (e.g. 20mbit)"; return 1; }
  # Bucket of ~4 ms at the rate, at least 128 KB: tbf needs a burst above rate/HZ and above the
  # packets it is given, which with GSO/TSO are up to 64 KB super-packets; a smaller bucket makes
  # tbf split them and TCP underrun the limit (measured: 24-40 Mbit/s through "50mbit" with 32 KB).
  burst=$(awk -v b="$bps" 'BEGIN { x = b / 8 * 0.004; if (x < 131072) x = 131072; printf "%d", x }')
  tb_exec "$node" tc qdisc replace dev "$ifname" root tbf rate "$bps"bit burst "$burst" latency 50ms
}

tb_delay() {
  local node=$1 ifname=$2 ms=$3 state q pid log i
  state="$TB_DIR/delay.$node.$ifname"
  if [[ -f $state ]]; then
    read -r q pid <"$state"
    # Rule first, then the line: the line releases what it holds on SIGTERM, so nothing drops.
    _tb_ipt "$node" -t mangle -D POSTROUTING -o "$ifname" -j NFQUEUE --queue-num "$q" || return 1
    tb_stop "$pid"
    rm -f "$state"
  fi
  awk -v d="$ms" 'BEGIN { exit !(d > 0) }' || return 0
  if [[ ! -x $TB_DELAYLINE ]]; then
    tb_log "tb_delay: $TB_DELAYLINE not built (ninja -C \$MPROXY_BUILD delayline)"
    return 1
  fi
  q=$TB_NEXT_QUEUE
  TB_NEXT_QUEUE=$((TB_NEXT_QUEUE + 1))
  log="$TB_DIR/delayline.$node.$ifname.$q.log"
  tb_bg "$node" "$log" "$TB_DELAYLINE" --queue "$q" --delay-ms "$ms" >/dev/null || return 1
  pid=$TB_BG_PID
  for i in $(seq 250); do
    grep -q '^ready' "$log" 2>/dev/null && break
    if ! kill -0 "$pid" 2>/dev/null; then
      tb_log "tb_delay: delay line died: $(cat "$log")"
      return 1
    fi
    sleep 0.02
  done
  grep -q '^ready' "$log" || { tb_log "tb_delay: delay line not ready: $(cat "$log")"; return 1; }
  echo "$q $pid" >"$state"
  # No --queue-bypass: a dead delay line should show up as a dead link, not as a silent zero delay.
  _tb_ipt "$node" -t mangle -A POSTROUTING -o "$ifname" -j NFQUEUE --queue-num "$q"
}

# ---------------------------------------------------------------------------------------------
# Traffic helpers.

tb_ping() {
  local node=$1
  shift
  tb_exec "$node" python3 "$TB_PING" "$@"
}

# tb_ping_stats NODE DEST ARGS...: "loss_pct min avg max" (ms; "- - -" when nothing came back).
tb_ping_stats() {
  tb_ping "$@" -q | awk '
    /packet loss/ { for (i = 1; i <= NF; i++) if ($i ~ /%$/) { loss = $i; sub(/%/, "", loss) } }
    /^rtt/ { split($4, v, "/"); mn = v[1]; av = v[2]; mx = v[3] }
    END { if (mn == "") { mn = "-"; av = "-"; mx = "-" } print loss, mn, av, mx }'
}

tb_wait_port() {
  local node=$1 port=$2 secs=${3:-5} i
  for i in $(seq $((secs * 50))); do
    tb_exec "$node" ss -Htln "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.02
  done
  tb_log "tb_wait_port: nothing listens on $node port $port"
  return 1
}

# tb_iperf CLIENT SERVER DEST SECONDS [client args...]: one iperf3 run; prints the receiver's
# Mbit/s. The server side runs once (-1) and is killed by cleanup if the client fails.
tb_iperf() {
  local cnode=$1 snode=$2 dest=$3 secs=$4 port json spid
  shift 4
  port=$((5201 + RANDOM % 2000))
  tb_bg "$snode" "$TB_DIR/iperf3-server.$port.log" iperf3 -s -1 -p "$port" >/dev/null || return 1
  spid=$TB_BG_PID
  tb_wait_port "$snode" "$port" || { tb_stop "$spid"; return 1; }
  json=$(tb_exec "$cnode" iperf3 -c "$dest" -p "$port" -t "$secs" -J "$@" 2>&1)
  # The one-off server exits after the test; if the client never connected, stop it.
  for _ in $(seq 100); do [[ -e /proc/$spid ]] || break; sleep 0.02; done
  tb_stop "$spid"
  python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
    print("%.1f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))
except Exception as e:
    sys.exit("tb_iperf: no result: %s" % e)' <<<"$json"
}

# ---------------------------------------------------------------------------------------------
# Teardown.

_tb_on_signal() {
  tb_cleanup
  exit "$1"
}

tb_cleanup() {
  ((TB_CLEANED)) && return 0
  TB_CLEANED=1
  local cmd ns pids i
  for ((i = ${#TB_ATEXIT[@]} - 1; i >= 0; i--)); do
    cmd=${TB_ATEXIT[i]}
    eval "$cmd" || true
  done
  for ns in "${TB_NAMESPACES[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [[ -n $pids ]] && kill -TERM $pids 2>/dev/null
  done
  for i in $(seq 50); do
    pids=""
    for ns in "${TB_NAMESPACES[@]}"; do pids+=$(ip netns pids "$ns" 2>/dev/null); done
    [[ -z $pids ]] && break
    sleep 0.02
  done
  for ns in "${TB_NAMESPACES[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  if [[ -n $TB_DIR && -d $TB_DIR ]]; then
    if [[ -n ${TB_KEEP:-} ]]; then tb_log "logs kept in $TB_DIR"; else rm -rf "$TB_DIR"; fi
  fi
  TB_NODES=() TB_NAMESPACES=()
  return 0
}
