// A level-triggered epoll loop: file descriptors with handlers, run one wait at a time. The daemon
// owns the policy (what to do when a packet batch or a command arrives); this only dispatches.
// Single-threaded by design: the engine, the queue and the control server are never touched
// concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "packet/result.h"
#include "proxy/sys.h"

namespace mproxy::proxy {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;  // EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR

  static Result<std::unique_ptr<EventLoop>> Create();

  // Watches fd for `events` (EPOLLIN, EPOLLOUT; errors and hang-ups are always reported). The fd
  // is not owned. Handlers may add and remove fds, including their own.
  Result<void> Add(int fd, uint32_t events, Handler handler);
  Result<void> Modify(int fd, uint32_t events);
  void Remove(int fd);
  [[nodiscard]] bool Watching(int fd) const { return handlers_.contains(fd); }

  // Waits up to timeout_ms (-1: forever, 0: poll) and runs the handlers of ready fds. Returns the
  // number of events dispatched; EINTR counts as zero events.
  Result<int> RunOnce(int timeout_ms);

 private:
  EventLoop() = default;
  struct Entry {
    uint32_t generation;
    std::shared_ptr<Handler> handler;
  };
  UniqueFd epoll_;
  uint32_t next_generation_ = 1;
  // fd -> handler; the epoll cookie carries (generation << 32 | fd) so an event for an fd that was
  // removed (and perhaps reused) earlier in the same batch is recognised and skipped.
  std::unordered_map<int, Entry> handlers_;
};

}  // namespace mproxy::proxy
