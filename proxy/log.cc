#include "proxy/log.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <string>

namespace mproxy::proxy {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
constexpr std::array<std::string_view, 4> kLevelNames{"error", "warn", "info", "debug"};

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
LogLevel GetLogLevel() { return g_level.load(std::memory_order_relaxed); }

std::string_view LogLevelName(LogLevel level) { return kLevelNames[static_cast<size_t>(level)]; }

Result<LogLevel> ParseLogLevel(std::string_view name) {
  for (size_t i = 0; i < kLevelNames.size(); ++i) {
    if (kLevelNames[i] == name) return static_cast<LogLevel>(i);
  }
  return MakeError("unknown log level '" + std::string(name) + "' (error, warn, info, debug)");
}

LogLine::~LogLine() {
  // One write per line so that lines from concurrent processes (tests run several daemons) do not
  // interleave mid-line.
  std::string line = "mproxyd[" + std::to_string(::getpid()) + "]: ";
  line += LogLevelName(level_);
  line += ' ';
  line += out_.str();
  line += '\n';
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

bool RateLimited::Allow() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_) return false;
  next_ = now + interval_;
  return true;
}

}  // namespace mproxy::proxy
