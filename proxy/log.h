// Leveled logging to stderr, one line per message: "mproxyd[pid]: LEVEL message". The daemon runs
// in the foreground under a supervisor (systemd, a test script), which timestamps stderr itself.
//
//   MPROXY_LOG(kInfo) << "queue " << n << " bound";
//
// The stream is only built when the level is enabled. Not for the per-packet path: data-path
// events are counters (packet/counters.h), and the few data-path errors worth a line go through
// RateLimited so a storm cannot flood the log.
#pragma once

#include <chrono>
#include <sstream>
#include <string_view>

#include "packet/result.h"

namespace mproxy::proxy {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "error", "warn", "info", "debug".
Result<LogLevel> ParseLogLevel(std::string_view name);
std::string_view LogLevelName(LogLevel level);
inline bool LogEnabled(LogLevel level) { return level <= GetLogLevel(); }

class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  ~LogLine();
  std::ostringstream& stream() { return out_; }

 private:
  LogLevel level_;
  std::ostringstream out_;
};

struct LogVoidify {
  void operator&(std::ostream&) {}
};

// Allows one event per `interval`; the caller logs only when Allow() is true.
class RateLimited {
 public:
  explicit RateLimited(std::chrono::steady_clock::duration interval) : interval_(interval) {}
  bool Allow();

 private:
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point next_{};
};

}  // namespace mproxy::proxy

// glog's trick: `&` binds looser than `<<`, so the whole stream expression is the right operand,
// and the conditional expression keeps the macro safe inside an unbraced if/else.
#define MPROXY_LOG(level)                                        \
  !::mproxy::proxy::LogEnabled(::mproxy::proxy::LogLevel::level) \
      ? (void)0                                                  \
      : ::mproxy::proxy::LogVoidify() &                          \
            ::mproxy::proxy::LogLine(::mproxy::proxy::LogLevel::level).stream()
