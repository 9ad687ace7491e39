// Client side of the control socket (used by mproxyctl and by tests): connect, send one request,
// read one response line with a deadline.
#pragma once

#include <chrono>
#include <string>

#include "cli/control_protocol.h"
#include "packet/result.h"

namespace mproxy::cli {

class ControlClient {
 public:
  // Error codes tell the caller why (mproxyctl maps them to exit codes): ENOENT (no socket file)
  // and ECONNREFUSED (stale socket, nobody listening) mean the daemon is not running; EACCES /
  // EPERM mean the socket is not ours to use; ENAMETOOLONG for a path beyond sun_path.
  static Result<ControlClient> Connect(const std::string& path);

  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&& other) noexcept;
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;
  ~ControlClient();

  Result<void> Send(const Request& request, std::chrono::milliseconds timeout);
  // Waits for one response line. ETIMEDOUT when the deadline passes, ECONNRESET when the daemon
  // closes the connection first, EPROTO for an undecodable line or one over kMaxResponseBytes.
  Result<Response> Receive(std::chrono::milliseconds timeout);
  Result<Response> Call(const Request& request, std::chrono::milliseconds timeout);

  [[nodiscard]] int fd() const { return fd_; }

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string buffer_;  // bytes received after the last returned line
};

}  // namespace mproxy::cli
