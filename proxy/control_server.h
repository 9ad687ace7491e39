// The daemon side of the control socket (protocol: cli/control_protocol.h).
//
// - Unix stream socket, mode 0600 by default (root only), parent directory created 0755 if
//   missing. A socket file left by a crashed run is replaced; if another daemon still answers on
//   it, Open() refuses (two daemons would fight over rules and queue).
// - Clients are non-blocking and served inside the daemon's epoll loop: no threads, so a command
//   handler may touch the engine directly. Requests are bounded (cli::kMaxRequestBytes), output
//   queued for a slow reader is bounded too; a malformed request gets an error response, never a
//   crash.
// - Commands are dispatched through a CommandRegistry the daemon fills ("status", "stats", ...)
//   and engines extend (later: "conn show", "handover", "subflow add").
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control_protocol.h"
#include "packet/counters.h"
#include "packet/result.h"
#include "proxy/event_loop.h"
#include "proxy/sys.h"

namespace mproxy::proxy {

// A command handler gets the request's args (always an object) and returns the response. It runs
// in the event loop: it must not block. A handler that throws (e.g. a json type error while
// building its answer) is answered with an internal error; the control boundary is the only place
// where exceptions are caught.
using CommandHandler = std::function<cli::Response(const nlohmann::json& args)>;

class CommandRegistry {
 public:
  // Names are words joined by single spaces ("conn show"). Returns false if the name is taken.
  bool Register(std::string name, std::string help, CommandHandler handler);
  [[nodiscard]] cli::Response Dispatch(const cli::Request& request) const;
  // Runs before every dispatched command (the daemon applies a pending interface change there,
  // so a command never acts on interface state older than the notifications already received).
  void SetBeforeDispatch(std::function<void()> hook) { before_dispatch_ = std::move(hook); }
  // name -> help, sorted by name.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> List() const;

 private:
  struct Entry {
    std::string help;
    CommandHandler handler;
  };
  std::map<std::string, Entry, std::less<>> commands_;
  std::function<void()> before_dispatch_;
};

enum class ControlCounter : size_t {
  kAccepted,        // connections accepted
  kRefused,         // connections closed at once: too many clients
  kRequests,        // requests dispatched
  kMalformed,       // undecodable requests (answered with an error)
  kTooLarge,        // requests over the size limit (answered, then the connection closed)
  kErrorResponses,  // responses with ok == false
  kSlowClients,     // clients closed because their unread output exceeded the limit
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(ControlCounter::kCount)>
    kControlCounterNames{"CtlAccepted", "CtlRefused",        "CtlRequests",   "CtlMalformed",
                         "CtlTooLarge", "CtlErrorResponses", "CtlSlowClients"};
using ControlCounters = CounterSet<ControlCounter, kControlCounterNames>;

struct ControlServerOptions {
  std::string path = "/run/mproxy/mproxyd.sock";
  mode_t mode = 0600;
  size_t max_clients = 32;
  size_t max_request_bytes = cli::kMaxRequestBytes;
  size_t max_pending_output = 32 << 20;
};

class ControlServer {
 public:
  // Creates the socket and registers it with `loop`. Both `registry` and `loop` must outlive the
  // server.
  static Result<std::unique_ptr<ControlServer>> Open(const ControlServerOptions& options,
                                                     const CommandRegistry& registry,
                                                     EventLoop& loop);
  // Closes all clients and removes the socket file (if it is still the one we created).
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  [[nodiscard]] const std::string& path() const { return options_.path; }
  [[nodiscard]] size_t clients() const { return clients_.size(); }
  [[nodiscard]] const ControlCounters& counters() const { return counters_; }
  void ForEachCounter(const CounterVisitor& visit) const { counters_.ForEach(visit); }

  // The loop's handlers, public so tests can drive them without a loop.
  void OnListenReady();
  void OnClientReady(int fd, uint32_t events);

 private:
  struct Client {
    UniqueFd fd;
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool want_write = false;  // EPOLLOUT registered
    bool close_after_write = false;
  };
  ControlServer(const ControlServerOptions& options, const CommandRegistry& registry,
                EventLoop& loop);
  Result<void> Listen();
  // Handles complete lines in c.in; false when the client must be closed now.
  void ProcessInput(Client& c);
  void Respond(Client& c, const cli::Response& r);
  // Writes pending output; false when the client must be closed.
  bool Flush(Client& c);
  void CloseClient(int fd);

  ControlServerOptions options_;
  const CommandRegistry& registry_;
  EventLoop& loop_;
  UniqueFd listen_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::map<int, Client> clients_;
  ControlCounters counters_;
};

// Creates `dir` and its missing parents with `mode` (like mkdir -p).
Result<void> MakeDirs(const std::string& dir, mode_t mode);

}  // namespace mproxy::proxy
