// Small syscall helpers shared by the proxy/ adapters: an owning file descriptor and the one way
// to turn errno into an mproxy::Error (Envoy-style: syscall wrappers return {value, errno}).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "packet/result.h"

namespace mproxy::proxy {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "what: strerror(err)" with code = err.
inline Error SysError(std::string_view what, int err = errno) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return MakeError(std::move(msg), err);
}

}  // namespace mproxy::proxy
