// Fuzzes the rtnetlink parsers the daemon's policy routing reads kernel dumps and notifications
// with (proxy/rtnetlink.h). The input is one datagram. Invariants (a violation traps): splitting and
// parsing never crash or read out of bounds (ASan); every split message lies inside the datagram;
// whatever parses as a route or rule re-builds into a request that parses back to the same value
// (so a copied route is exactly the route that was read); links and addresses re-build likewise.
#include <cstddef>
#include <cstdint>

#include "proxy/rtnetlink.h"

namespace {

using namespace mproxy::proxy::rtnl;  // NOLINT(google-build-using-namespace): fuzz harness
using mproxy::packet::Bytes;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Bytes datagram(data, size);
  for (Bytes msg : SplitMessages(datagram)) {
    Check(msg.data() >= data && msg.data() + msg.size() <= data + size);
    (void)MessageType(msg);
    (void)StatusOf(msg);
    if (auto link = ParseLink(msg)) {
      auto back = ParseLink(BuildLinkMessage(*link, 1));
      Check(back && *back == *link);
    }
    if (auto addr = ParseAddr(msg)) {
      auto back = ParseAddr(BuildAddrMessage(*addr, 1));
      Check(back && back->address == addr->address && back->ifindex == addr->ifindex &&
            back->prefix_len == addr->prefix_len);
    }
    if (auto route = ParseRoute(msg)) {
      auto back = ParseRoute(BuildRouteRequest(Op::kAdd, *route, 1));
      Check(back && back->dst == route->dst && back->dst_len == route->dst_len &&
            back->gateway == route->gateway && back->oif == route->oif &&
            back->table == route->table);
    }
    if (auto rule = ParseRule(msg)) {
      auto back = ParseRule(BuildRuleRequest(Op::kAdd, *rule, 1));
      Check(back && back->priority == rule->priority && back->table == rule->table &&
            back->src == rule->src && back->fwmark == rule->fwmark);
    }
  }
  return 0;
}
