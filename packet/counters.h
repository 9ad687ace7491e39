// Counters for data-path decisions, in the spirit of the kernel's MIB: a fixed array indexed by a
// module's enum, with a name table used both for `mproxyctl stats` and for tests.
//
// Usage:
//   enum class FooCounter : size_t { kSeen, kBad, kCount };
//   inline constexpr std::array<std::string_view, size_t(FooCounter::kCount)> kFooCounterNames{
//       "FooSeen", "FooBad"};
//   CounterSet<FooCounter, kFooCounterNames> c;  c.Inc(FooCounter::kBad);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace mproxy {

using CounterVisitor = std::function<void(std::string_view name, uint64_t value)>;

template <typename Enum, const auto& Names>
class CounterSet {
 public:
  static constexpr size_t kSize = static_cast<size_t>(Enum::kCount);
  static_assert(std::tuple_size_v<std::remove_cvref_t<decltype(Names)>> == kSize,
                "every counter needs a name");

  void Inc(Enum e, uint64_t by = 1) { values_[static_cast<size_t>(e)] += by; }
  [[nodiscard]] uint64_t Get(Enum e) const { return values_[static_cast<size_t>(e)]; }
  void ForEach(const CounterVisitor& visit) const {
    for (size_t i = 0; i < kSize; ++i) visit(Names[i], values_[i]);
  }

 private:
  std::array<uint64_t, kSize> values_{};
};

}  // namespace mproxy
