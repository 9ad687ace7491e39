// Deterministic implementations of the engine's injected Clock and Rng (packet/engine.h), for
// unit tests and the deterministic simulation (architecture.md, practice 7). Never used for
// anything secret: MPTCP keys come from the daemon's real entropy source.
#pragma once

#include <cstdint>

#include "packet/engine.h"

namespace mproxy::packet {

// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, every seed is fine. Also used to seed
// Xoshiro256.
class SplitMix64 final : public Rng {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next64() override {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// xoshiro256** (Blackman, Vigna 2018): fast, long period; for simulations drawing many numbers.
class Xoshiro256 final : public Rng {
 public:
  explicit Xoshiro256(uint64_t seed) {
    SplitMix64 sm(seed);
    for (auto& s : s_) s = sm.Next64();  // never all zero: SplitMix64 output of 4 steps
  }
  uint64_t Next64() override {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, bound) (bound > 0), by Lemire's multiply-shift; the tiny bias is irrelevant
  // for tests.
  uint64_t Below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next64()) * bound) >> 64);
  }

 private:
  static constexpr uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  FakeClock() = default;
  explicit FakeClock(Time start) : now_(start) {}
  [[nodiscard]] Time Now() const override { return now_; }
  void Advance(Duration d) { now_ += d; }
  void Set(Time t) { now_ = t; }

 private:
  Time now_{};
};

}  // namespace mproxy::packet
