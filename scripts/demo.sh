#!/usr/bin/env bash
# The demo on the built-in namespaced testbed (run as root on Debian 12):
#   mobile host (wlan0, eth1) -- router -- server
# A plain-TCP client on the mobile host talks to a *native Linux MPTCP* server; mproxyd on the
# mobile host converts the connection to MPTCP v1 on the wire. The demo shows the transfer, the
# daemon's view (mproxyctl conn show / stats) and the native server's own counters proving it
# spoke MPTCP, then stops the daemon cleanly. Everything lives in throw-away namespaces.
#
# Not yet: the handover from wlan0 to eth1 (issue 4: subflows); see README "Status".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
set +e
MPROXY_SRC=$PWD
MPROXY_BUILD=$PWD/build
source tests/testbed/testbed.sh
source tests/netns/lib.sh
tb_require_root
BYTES=${MPROXY_DEMO_BYTES:-$((512 * 1024 * 1024))}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Testbed: mobile (wlan0 198.18.1.2, eth1 198.18.2.2) -- router -- server 198.18.3.2"
tb_create >/dev/null
mptcp_sysctl server
echo "namespaces: $(tb_ns mobile) $(tb_ns router) $(tb_ns server)"

step "mproxyd on the mobile host: --engine mptcp --ports 5201"
proxy_start mobile demo --engine mptcp --ports 5201 --fail-policy closed || exit 1
proxy_ctl mobile demo status

step "Native MPTCP server (socket protocol 262) sends and receives $((BYTES >> 20)) MiB; plain TCP client behind mproxyd"
peer_server server srv --proto mptcp --send "$BYTES" || exit 1
start=$(date +%s.%N)
peer_client mobile cli --connect "$TB_SERVER4" --send "$BYTES" &
client=$!
while kill -0 "$client" 2>/dev/null; do
  sleep 0.5
  proxy_ctl mobile demo conn show 2>/dev/null | tail -n +1 | sed 's/^/  /'
done
wait "$client"
peer_wait srv
secs=$(python3 -c "import time,sys; print('%.2f' % (time.time() - float(sys.argv[1])))" "$start")

step "Result"
if check_transfer cli srv 1 server; then
  echo "both directions intact (sha256 equal at both ends), $((2 * BYTES >> 20)) MiB in ${secs}s"
else
  echo "TRANSFER FAILED"
fi
python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
m = r["mptcp"]
print("server MPTCP_INFO: fallback=%s remote_key_received=%s token=%08x" % (m["fallback"], m["remote_key_received"], m["token"]))
' "$TB_DIR/srv.json"
echo "server MPTcpExt: MPCapableSYNRX=$(mptcp_counter server MPCapableSYNRX) MPCapableACKRX=$(mptcp_counter server MPCapableACKRX) DssFallback=$(mptcp_counter server DssFallback) MPCapableFallbackACK=$(mptcp_counter server MPCapableFallbackACK)"

step "mproxyctl stats (engine counters that moved)"
proxy_ctl mobile demo stats | grep -E '^  (Mp|Nfq)' | grep -v ' 0$'

step "Clean stop (SIGTERM): rules removed"
proxy_stop demo && echo "mproxyd exited 0"
tb_exec mobile iptables-save | grep -c MPXDEMO | sed 's/^/chains or rules left: /'
tb_cleanup
