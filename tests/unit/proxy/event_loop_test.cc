#include "proxy/event_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

namespace mproxy::proxy {
namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    r = UniqueFd(fds[0]);
    w = UniqueFd(fds[1]);
  }
  UniqueFd r, w;
};

TEST(EventLoop, DispatchesReadyFds) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Pipe p;
  int calls = 0;
  ASSERT_TRUE((*loop)
                  ->Add(p.r.get(), EPOLLIN,
                        [&](uint32_t ev) {
                          EXPECT_TRUE(ev & EPOLLIN);
                          char c;
                          EXPECT_EQ(read(p.r.get(), &c, 1), 1);
                          ++calls;
                        })
                  .ok());
  auto idle = (*loop)->RunOnce(0);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(*idle, 0);
  ASSERT_EQ(write(p.w.get(), "x", 1), 1);
  auto one = (*loop)->RunOnce(1000);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, 1);
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, HandlerMayRemoveItselfAndOthers) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  EventLoop& l = **loop;
  Pipe a, b;
  int a_calls = 0, b_calls = 0;
  ASSERT_TRUE(l.Add(a.r.get(), EPOLLIN, [&](uint32_t) {
                 ++a_calls;
                 l.Remove(a.r.get());
                 l.Remove(b.r.get());
               }).ok());
  ASSERT_TRUE(l.Add(b.r.get(), EPOLLIN, [&](uint32_t) {
                 ++b_calls;
                 l.Remove(a.r.get());
                 l.Remove(b.r.get());
               }).ok());
  ASSERT_EQ(write(a.w.get(), "x", 1), 1);
  ASSERT_EQ(write(b.w.get(), "x", 1), 1);
  ASSERT_TRUE(l.RunOnce(1000).ok());
  // Whichever ran first removed the other, whose event in the same batch is skipped.
  EXPECT_EQ(a_calls + b_calls, 1);
  EXPECT_FALSE(l.Watching(a.r.get()));
  EXPECT_FALSE(l.Watching(b.r.get()));
  auto again = l.RunOnce(0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

TEST(EventLoop, ModifyAndErrors) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Pipe p;
  EXPECT_FALSE((*loop)->Modify(p.w.get(), EPOLLOUT).ok());  // not watched
  int calls = 0;
  ASSERT_TRUE((*loop)->Add(p.w.get(), 0, [&](uint32_t) { ++calls; }).ok());
  ASSERT_TRUE((*loop)->RunOnce(0).ok());
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE((*loop)->Modify(p.w.get(), EPOLLOUT).ok());
  ASSERT_TRUE((*loop)->RunOnce(0).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE((*loop)->Add(-1, EPOLLIN, [](uint32_t) {}).ok());
}

}  // namespace
}  // namespace mproxy::proxy
