// Fuzzes the MPTCP option codec (mptcp/options.h).
//
// Input: byte 0 selects the TCP flags of the segment (bit 0 SYN, 1 ACK, 2 RST, 3 payload); the
// rest is read three ways:
//   1. as one kind-30 option, exactly as given (length byte may disagree with the size);
//   2. as one option with kind and length forced to 30 / size, so every body reaches a parser;
//   3. its first 40 bytes (a TCP option area) as a sequence of TLVs fed through
//      SegmentOptionsBuilder (the co-occurrence filter).
// Properties: nothing crashes or reads out of bounds (ASan), and every accepted option survives
// Emit -> ParseOption unchanged, with Emit writing exactly EncodedLength() <= 40 bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "mptcp/options.h"

namespace {

using mproxy::mptcp::Option;
using mproxy::packet::Bytes;

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckRoundTrip(const Option& option) {
  std::array<uint8_t, 64> buf{};
  mproxy::packet::ByteWriter w(buf);
  Check(mproxy::mptcp::Emit(option, w));
  Check(w.offset() == mproxy::mptcp::EncodedLength(option));
  Check(w.offset() <= 40);
  const mproxy::mptcp::ParsedOption again = mproxy::mptcp::ParseOption(w.Written());
  Check(again.ok());
  Check(again.option == option);
  Check(mproxy::mptcp::SubtypeOf(again.option) == mproxy::mptcp::SubtypeOf(option));
}

void ParseOne(Bytes bytes) {
  const mproxy::mptcp::ParsedOption p = mproxy::mptcp::ParseOption(bytes);
  if (p.ok()) CheckRoundTrip(p.option);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const Bytes rest(data + 1, size - 1);

  // 1. As given.
  ParseOne(rest);

  // 2. Kind and length forced (a TCP option is at most 40 bytes, the length byte at most 255).
  if (rest.size() >= 2 && rest.size() <= 255) {
    std::array<uint8_t, 255> opt{};
    for (size_t i = 0; i < rest.size(); ++i) opt[i] = rest[i];
    opt[0] = mproxy::mptcp::kMptcpOptionKind;
    opt[1] = static_cast<uint8_t>(rest.size());
    ParseOne(Bytes(opt.data(), rest.size()));
  }

  // 3. A segment's options through the co-occurrence filter.
  const mproxy::mptcp::SegmentFlags flags{(sel & 1) != 0, (sel & 2) != 0, (sel & 4) != 0,
                                          (sel & 8) != 0};
  mproxy::mptcp::SegmentOptionsBuilder builder(flags);
  size_t fed = 0;
  size_t accepted = 0;
  // A TCP header holds at most 40 option bytes (so at most 20 options: the per-status tallies
  // are 8-bit and saturate far above that).
  const Bytes area = rest.first(rest.size() < 40 ? rest.size() : 40);
  for (size_t i = 0; i + 2 <= area.size();) {
    const size_t len = area[i + 1];
    if (len < 2 || len > area.size() - i) break;  // Linux stops at a bad TCP option length too
    if (builder.Add(area.subspan(i, len)) == mproxy::mptcp::OptionStatus::kAccepted) ++accepted;
    ++fed;
    i += len;
  }
  const mproxy::mptcp::SegmentOptions& s = builder.options();
  size_t total = 0;
  for (uint8_t n : s.status_count) total += n;
  Check(total == fed);
  Check(s.count(mproxy::mptcp::OptionStatus::kAccepted) == accepted);
  size_t slots = 0;
  auto visit = [&slots](const auto& slot) {
    if (slot) {
      ++slots;
      CheckRoundTrip(*slot);
    }
  };
  visit(s.mp_capable);
  visit(s.mp_join);
  visit(s.dss);
  visit(s.add_addr);
  visit(s.remove_addr);
  visit(s.mp_prio);
  visit(s.mp_fail);
  visit(s.mp_fastclose);
  visit(s.mp_tcprst);
  Check(slots == accepted);
  Check(s.empty() == (accepted == 0));
  // Segment rules hold for what was kept.
  if (s.mp_tcprst) Check(flags.rst);
  if (s.mp_capable && flags.syn) Check(s.count(mproxy::mptcp::OptionStatus::kAccepted) == 1);
  return 0;
}
