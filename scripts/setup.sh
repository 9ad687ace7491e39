#!/usr/bin/env bash
# Installs every Debian 12 package mproxy needs to build, run and test, then configures and builds
# the tree (./build with g++, ./build-fuzz with clang/libFuzzer). Idempotent: a second run only
# rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config g++ clang libclang-rt-14-dev
  libmnl-dev libnetfilter-queue-dev libssl-dev libcli11-dev nlohmann-json3-dev
  # runtime
  iptables iproute2 procps
  # test and bench
  libgtest-dev libgmock-dev googletest libbenchmark-dev python3 tshark tcpdump iperf3 ethtool mptcpize
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROXY_FUZZ_BIN_DIR="$PWD/build-fuzz/tests/fuzz" >/dev/null
ninja -C build -j "$jobs"
# Fuzzers: the same sources instrumented by clang; only the fuzz targets are built there.
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROXY_FUZZ=ON >/dev/null
fuzz_targets=$(ninja -C build-fuzz -t targets all | awk -F: '/_fuzz: /{print $1}' | grep -v '/' || true)
[[ -n "$fuzz_targets" ]] && ninja -C build-fuzz -j "$jobs" $fuzz_targets
echo "setup: done"
