#include "proxy/event_loop.h"

#include <sys/epoll.h>

#include <array>

namespace mproxy::proxy {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_.valid()) return SysError("epoll_create1");
  return loop;
}

Result<void> EventLoop::Add(int fd, uint32_t events, Handler handler) {
  const uint32_t gen = next_generation_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = (uint64_t{gen} << 32) | static_cast<uint32_t>(fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return SysError("epoll_ctl(ADD)");
  handlers_[fd] = Entry{gen, std::make_shared<Handler>(std::move(handler))};
  return {};
}

Result<void> EventLoop::Modify(int fd, uint32_t events) {
  const auto it = handlers_.find(fd);
  if (it == handlers_.end()) return MakeError("epoll_ctl(MOD): fd not watched", EBADF);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = (uint64_t{it->second.generation} << 32) | static_cast<uint32_t>(fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return SysError("epoll_ctl(MOD)");
  return {};
}

void EventLoop::Remove(int fd) {
  if (handlers_.erase(fd) == 0) return;
  // Fails harmlessly when the fd was already closed (closing removes it from the epoll set).
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Result<int> EventLoop::RunOnce(int timeout_ms) {
  std::array<epoll_event, 64> events;
  const int n =
      ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    return SysError("epoll_wait");
  }
  int dispatched = 0;
  for (int i = 0; i < n; ++i) {
    const uint64_t cookie = events[static_cast<size_t>(i)].data.u64;
    const int fd = static_cast<int>(static_cast<uint32_t>(cookie));
    const auto gen = static_cast<uint32_t>(cookie >> 32);
    const auto it = handlers_.find(fd);
    if (it == handlers_.end() || it->second.generation != gen) continue;
    // Keep the handler alive while it runs: it may remove itself.
    const std::shared_ptr<Handler> h = it->second.handler;
    (*h)(events[static_cast<size_t>(i)].events);
    ++dispatched;
  }
  return dispatched;
}

}  // namespace mproxy::proxy
