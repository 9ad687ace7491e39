#include "iptables/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace mproxy::iptables {
namespace {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  [[nodiscard]] int get() const { return fd_; }
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Error SysError(const std::string& what) {
  int e = errno;
  return MakeError(what + ": " + std::strerror(e), e);
}

class SpawnParts {
 public:
  SpawnParts() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  SpawnParts(const SpawnParts&) = delete;
  SpawnParts& operator=(const SpawnParts&) = delete;
  ~SpawnParts() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
};

int Spawn(pid_t* pid, const std::vector<std::string>& argv, const SpawnParts& parts) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  int rc = posix_spawnp(pid, cargv[0], &parts.actions, &parts.attr, cargv.data(), environ);
  if (rc != ENOENT || argv[0].find('/') != std::string::npos) return rc;
  for (const char* dir : {"/usr/sbin/", "/sbin/"}) {
    std::string path = dir + argv[0];
    rc = posix_spawn(pid, path.c_str(), &parts.actions, &parts.attr, cargv.data(), environ);
    if (rc != ENOENT) return rc;
  }
  return rc;
}

}  // namespace

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

Result<ToolOutput> RunTool(const std::vector<std::string>& argv, std::string_view input,
                           std::chrono::milliseconds timeout) {
  if (argv.empty()) return MakeError("RunTool: empty argv");
  const std::string name = JoinArgv(argv);
  int sv[2], po[2], pe[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return SysError(name);
  Fd in_parent(sv[0]), in_child(sv[1]);
  if (::pipe2(po, O_CLOEXEC) != 0) return SysError(name);
  Fd out_parent(po[0]), out_child(po[1]);
  if (::pipe2(pe, O_CLOEXEC) != 0) return SysError(name);
  Fd err_parent(pe[0]), err_child(pe[1]);

  SpawnParts parts;
  // dup2 onto 0/1/2 clears close-on-exec on the targets; everything else we hold stays CLOEXEC.
  posix_spawn_file_actions_adddup2(&parts.actions, in_child.get(), 0);
  posix_spawn_file_actions_adddup2(&parts.actions, out_child.get(), 1);
  posix_spawn_file_actions_adddup2(&parts.actions, err_child.get(), 2);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&parts.attr, &empty);
  posix_spawnattr_setsigdefault(&parts.attr, &all);
  posix_spawnattr_setflags(&parts.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  if (int rc = Spawn(&pid, argv, parts); rc != 0) {
    return MakeError(name + ": cannot start: " + std::strerror(rc), rc);
  }
  in_child.Close();
  out_child.Close();
  err_child.Close();
  for (int fd : {in_parent.get(), out_parent.get(), err_parent.get()}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  ToolOutput res;
  size_t written = 0;
  if (input.empty()) in_parent.Close();  // EOF at once
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (out_parent.get() >= 0 || err_parent.get() >= 0) {
    pollfd fds[3];
    nfds_t n = 0;
    if (in_parent.get() >= 0) fds[n++] = {in_parent.get(), POLLOUT, 0};
    if (out_parent.get() >= 0) fds[n++] = {out_parent.get(), POLLIN, 0};
    if (err_parent.get() >= 0) fds[n++] = {err_parent.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int pr = ::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) {
      Error e = SysError(name + ": poll");
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return e;
    }
    for (nfds_t i = 0; pr > 0 && i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_parent.get()) {
        ssize_t w = ::send(in_parent.get(), input.data() + written, input.size() - written,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) written += static_cast<size_t>(w);
        // EPIPE: the tool exited without reading everything; its status and stderr will tell.
        if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          in_parent.Close();
        }
        continue;
      }
      Fd& src = fds[i].fd == out_parent.get() ? out_parent : err_parent;
      std::string& dst = &src == &out_parent ? res.out : res.err;
      char buf[16384];
      ssize_t r = ::read(src.get(), buf, sizeof buf);
      if (r > 0) {
        dst.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        src.Close();
      }
    }
  }
  in_parent.Close();
  if (timed_out) ::kill(pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return SysError(name + ": waitpid");
  }
  if (timed_out) {
    return MakeError(
        name + ": timed out after " + std::to_string(timeout.count()) + " ms; stderr: " + res.err,
        ETIMEDOUT);
  }
  res.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  return res;
}

}  // namespace mproxy::iptables
