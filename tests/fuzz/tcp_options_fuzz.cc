// Fuzzes the TCP option codec (packet/tcp.h). The first byte drives a sequence of edits, the rest
// is the option area. Invariants (a violation traps): parse never crashes; what parses re-emits
// to the same bytes (plus padding); edits never exceed 40 bytes; every emitted list parses back
// to a list that emits the same bytes; typed accessors are consistent with the raw bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "packet/tcp.h"

namespace {

using namespace mproxy::packet;  // NOLINT(google-build-using-namespace): fuzz harness

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<uint8_t> Emit(const TcpOptionList& l) {
  std::vector<uint8_t> out(l.EncodedSize());
  ByteWriter w(out);
  Check(l.Emit(w) && w.offset() == out.size() && out.size() % 4 == 0 && out.size() <= 40);
  return out;
}

void CheckRoundTrip(const TcpOptionList& l) {
  const auto bytes = Emit(l);
  auto back = TcpOptionList::Parse(bytes);
  Check(back.ok());
  Check(Emit(*back) == bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t program = data[0];
  const Bytes area(data + 1, size - 1);
  auto parsed = TcpOptionList::Parse(area);
  if (!parsed) {
    Check(ClassOf(ReasonOf(parsed.error())) == ParseErrorClass::kMalformedOptions);
    Check(area.size() <= 40 || ReasonOf(parsed.error()) == ParseError::kOptionsTooLong);
    return 0;
  }
  TcpOptionList& l = *parsed;
  Check(l.byte_size() == area.size());
  const auto emitted = Emit(l);
  Check(std::equal(area.begin(), area.end(), emitted.begin()));

  // Accessors agree with the raw bytes.
  size_t total = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    const TcpOptionView v = l[i];
    Check(v.raw.size() >= 1 && v.raw[0] == v.kind);
    Check(v.data.size() <= v.raw.size());
    total += v.raw.size();
  }
  Check(total == area.size());
  if (auto mss = l.Mss()) Check(l[*l.Find(tcp_opt::kMss)].raw.size() == 4);
  if (auto ts = l.Timestamps()) Check(l[*l.Find(tcp_opt::kTimestamps)].raw.size() == 10);
  std::array<SackBlock, 4> blocks;
  Check(l.SackBlocks(blocks) <= 4);

  // Edits chosen by the program byte.
  for (int step = 0; step < 4; ++step) {
    const uint8_t op = static_cast<uint8_t>(program >> (2 * step)) & 3u;
    const size_t before = l.byte_size();
    switch ((op + step) % 6) {
      case 0:
        if (!l.empty()) l.RemoveAt(program % l.size());
        break;
      case 1:
        if (l.AddRaw(tcp_opt::kMptcp, area.first(area.size() < 12 ? area.size() : 12))) {
          Check(l.byte_size() > before);
        } else {
          Check(l.byte_size() == before);
        }
        break;
      case 2:
        (void)l.AddTimestamps({program, step + 0u});
        break;
      case 3:
        (void)l.SetMss(1200);
        break;
      case 4:
        if (!l.empty()) (void)l.Replace(program % l.size(), 254, area.first(area.size() / 2));
        break;
      default:
        (void)l.AddNop();
    }
    Check(l.byte_size() <= 40);
    CheckRoundTrip(l);
  }
  return 0;
}
