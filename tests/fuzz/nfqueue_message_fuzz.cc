// Fuzzes the NFQUEUE packet-message parser (proxy/nfqueue.h ParsePacketMessage) that every queued
// packet goes through. The input is one netlink message; its nlmsg_len is forced to the input size
// (the receive path checks that bound before calling the parser). Invariants (a violation traps):
// parsing never crashes or reads outside the message (ASan); a parsed packet's payload lies inside
// the message; a truncated packet is flagged as such.
#include <linux/netlink.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "proxy/nfqueue.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(nlmsghdr) || size > 0x10000) return 0;
  // The parser reads an aligned message, as recvmmsg delivers it into aligned slots.
  std::vector<nlmsghdr> storage(size / sizeof(nlmsghdr) + 1);
  auto* bytes = reinterpret_cast<uint8_t*>(storage.data());
  std::memcpy(bytes, data, size);
  auto* nlh = storage.data();
  nlh->nlmsg_len = static_cast<uint32_t>(size);
  mproxy::proxy::QueuedPacket out;
  uint64_t bad = 0;
  if (mproxy::proxy::ParsePacketMessage(nlh, out, bad) == mproxy::proxy::ParseStatus::kPacket &&
      out.has_payload) {
    Check(out.payload.data() >= bytes && out.payload.data() + out.payload.size() <= bytes + size);
    if (out.truncated) Check(out.cap_len != out.payload.size());
  }
  return 0;
}
