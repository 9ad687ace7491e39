#include "cli/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mproxy::cli {
namespace {

using Clock = std::chrono::steady_clock;

Error Errno(const std::string& what, int err) {
  return MakeError(what + ": " + std::strerror(err), err);
}

// Waits until fd is ready for `events` or the deadline passes.
Result<void> WaitFor(int fd, decltype(pollfd::events) events, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return MakeError("timed out waiting for mproxyd", ETIMEDOUT);
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return Errno("poll", errno);
    if (rc > 0) return {};
  }
}

}  // namespace

Result<ControlClient> ControlClient::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return MakeError("control socket path too long or empty: " + path, ENAMETOOLONG);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("socket", errno);
  ControlClient client(fd);
  // A Unix stream connect completes (or fails) immediately unless the backlog is full (EAGAIN);
  // retry that briefly rather than reporting a busy daemon as dead.
  for (int attempt = 0;; ++attempt) {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && attempt < 50) {
      ::usleep(10000);
      continue;
    }
    if (err == ENOENT) return MakeError("mproxyd is not running (no socket at " + path + ")", err);
    if (err == ECONNREFUSED) {
      return MakeError("mproxyd is not running (nobody listens on " + path + ")", err);
    }
    if (err == EACCES || err == EPERM) {
      return MakeError("permission denied connecting to " + path + " (try as root)", err);
    }
    return Errno("connecting to " + path, err);
  }
  return client;
}

ControlClient::ControlClient(ControlClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}

ControlClient& ControlClient::operator=(ControlClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> ControlClient::Send(const Request& request, std::chrono::milliseconds timeout) {
  auto line = EncodeRequest(request);
  if (!line) return line.error();
  const auto deadline = Clock::now() + timeout;
  size_t off = 0;
  const std::string& s = line.value();
  while (off < s.size()) {
    const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n >= 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (auto w = WaitFor(fd_, POLLOUT, deadline); !w) return w.error();
      continue;
    }
    return Errno("sending to mproxyd", errno);
  }
  return {};
}

Result<Response> ControlClient::Receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return DecodeResponse(line);
    }
    if (buffer_.size() > kMaxResponseBytes) {
      return MakeError("response from mproxyd too large", EPROTO);
    }
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return MakeError("mproxyd closed the connection without answering", ECONNRESET);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (auto w = WaitFor(fd_, POLLIN, deadline); !w) return w.error();
      continue;
    }
    return Errno("receiving from mproxyd", errno);
  }
}

Result<Response> ControlClient::Call(const Request& request, std::chrono::milliseconds timeout) {
  if (auto r = Send(request, timeout); !r) return r.error();
  return Receive(timeout);
}

}  // namespace mproxy::cli
