#include "cli/handover.h"

#include <optional>

#include "cli/ctl_commands.h"

namespace mproxy::cli {
namespace {

// A count or id: any non-negative integer (a JSON literal may decode as signed).
std::optional<uint64_t> Count(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return std::nullopt;
  if (j[key].is_number_unsigned()) return j[key].get<uint64_t>();
  const int64_t v = j[key].get<int64_t>();
  if (v < 0) return std::nullopt;
  return static_cast<uint64_t>(v);
}
uint64_t Num(const nlohmann::json& j, const char* key) { return Count(j, key).value_or(0); }
std::string Str(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

HandoverOutcome FollowHandover(const HandoverFollow& f, const Request& start) {
  HandoverOutcome out;
  const std::string from = start.args.value("from", std::string("?"));
  const std::string to = start.args.value("to", std::string("?"));
  const std::string what = "handover " + from + " -> " + to;
  const auto t0 = f.now();
  const auto took = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(f.now() - t0).count();
  };

  auto started = f.call(start);
  if (!started) {
    out.exit_code = ExitCodeFor(started.error());
    out.message = what + ": " + started.error().message;
    return out;
  }
  if (!started->ok) {
    out.exit_code = kExitDaemonError;
    out.message = what + " refused: " + started->error;
    return out;
  }
  const auto started_id = Count(started->data, "id");
  if (!started_id) {
    out.exit_code = kExitDaemonError;
    out.message = what + ": the daemon's answer has no handover id";
    return out;
  }
  const uint64_t id = *started_id;
  Request status;
  status.command = "handover status";
  status.args = {{"id", id}};

  for (;;) {
    auto r = f.call(status);
    if (!r) {
      out.exit_code = ExitCodeFor(r.error());
      out.message = what + " (id " + std::to_string(id) + "): " + r.error().message;
      return out;
    }
    if (!r->ok) {
      out.exit_code = kExitDaemonError;
      out.message = what + " (id " + std::to_string(id) + "): " + r->error;
      return out;
    }
    nlohmann::json st = r->data;
    const std::string state = Str(st, "state");
    if (state == "in-progress" && f.now() - t0 < f.timeout) {
      f.sleep(f.poll);
      continue;
    }
    st["from"] = from;
    st["to"] = to;
    st["took_ms"] = took();
    const uint64_t conns = Num(st, "connections"), moved = Num(st, "moved"),
                   failed = Num(st, "failed");
    const std::string counts = std::to_string(moved) + " of " + std::to_string(conns) +
                               " connection(s) moved" +
                               (failed > 0 ? ", " + std::to_string(failed) + " failed" : "");
    const std::string ms = std::to_string(Num(st, "elapsed_ms")) + " ms";
    const std::string error = Str(st, "error");
    if (state == "in-progress") {
      out.exit_code = kExitTimeout;
      out.message = what + " not finished after " + std::to_string(took()) + " ms (" + counts +
                    " so far); it goes on in the daemon: mproxyctl handover status " +
                    std::to_string(id);
    } else if (state == "done" && failed == 0 && moved == conns) {
      out.exit_code = kExitOk;
      out.message = what + " done in " + ms + ": " +
                    (conns == 0 ? std::string("no connection to move") : counts);
    } else {
      out.exit_code = kExitIncomplete;
      out.message = what + " " + (state.empty() ? std::string("ended") : state) + " after " + ms +
                    ": " + counts + (error.empty() ? "" : " (" + error + ")");
    }
    out.data = std::move(st);
    return out;
  }
}

}  // namespace mproxy::cli
