#include "proxy/control_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>

#include "proxy/log.h"

namespace mproxy::proxy {

// ---------------------------------------------------------------------------------------------
// CommandRegistry

bool CommandRegistry::Register(std::string name, std::string help, CommandHandler handler) {
  return commands_.emplace(std::move(name), Entry{std::move(help), std::move(handler)}).second;
}

cli::Response CommandRegistry::Dispatch(const cli::Request& request) const {
  const auto it = commands_.find(request.command);
  if (it == commands_.end()) {
    return cli::Response::Fail("unknown command '" + request.command + "' (try 'help')");
  }
  const nlohmann::json args = request.args.is_object() ? request.args : nlohmann::json::object();
  try {
    if (before_dispatch_) before_dispatch_();
    return it->second.handler(args);
  } catch (const std::exception& e) {
    // The control boundary: a handler bug must not take the data path down with it.
    MPROXY_LOG(kError) << "command '" << request.command << "' failed: " << e.what();
    return cli::Response::Fail(std::string("internal error: ") + e.what());
  }
}

std::vector<std::pair<std::string, std::string>> CommandRegistry::List() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(commands_.size());
  for (const auto& [name, e] : commands_) out.emplace_back(name, e.help);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers

Result<void> MakeDirs(const std::string& dir, mode_t mode) {
  if (dir.empty()) return {};
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return MakeError(dir + " exists and is not a directory", ENOTDIR);
  }
  const size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (auto r = MakeDirs(dir.substr(0, slash), mode); !r) return r;
  }
  if (::mkdir(dir.c_str(), mode) < 0 && errno != EEXIST) return SysError("creating " + dir);
  return {};
}

namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return MakeError("control socket path must be 1.." + std::to_string(sizeof(addr.sun_path) - 1) +
                         " bytes: " + path,
                     ENAMETOOLONG);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// What is at `path` now: nothing, a socket someone answers on, or a stale socket.
enum class Existing { kNone, kLive, kStale };

Result<Existing> Probe(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return Existing::kNone;
    return SysError("checking " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return MakeError(path + " exists and is not a socket; refusing to replace it", EEXIST);
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return SysError("socket(AF_UNIX)");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    return Existing::kLive;
  }
  // EAGAIN: a listener exists whose backlog is full, i.e. a live (busy) daemon.
  if (errno == EAGAIN) return Existing::kLive;
  if (errno == ECONNREFUSED) return Existing::kStale;
  return SysError("probing " + path);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ControlServer

ControlServer::ControlServer(const ControlServerOptions& options, const CommandRegistry& registry,
                             EventLoop& loop)
    : options_(options), registry_(registry), loop_(loop) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Open(const ControlServerOptions& options,
                                                           const CommandRegistry& registry,
                                                           EventLoop& loop) {
  std::unique_ptr<ControlServer> s(new ControlServer(options, registry, loop));
  if (auto r = s->Listen(); !r) return r.error();
  return s;
}

Result<void> ControlServer::Listen() {
  const std::string& path = options_.path;
  auto addr = UnixAddress(path);
  if (!addr) return addr.error();

  const size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (auto r = MakeDirs(path.substr(0, slash), 0755); !r) return r;
  }
  auto existing = Probe(path, *addr);
  if (!existing) return existing.error();
  if (*existing == Existing::kLive) {
    return MakeError("another mproxyd is already running (it answers on " + path + ")", EADDRINUSE);
  }
  if (*existing == Existing::kStale) {
    MPROXY_LOG(kInfo) << "removing stale control socket " << path;
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) return SysError("removing " + path);
  }

  listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_.valid()) return SysError("socket(AF_UNIX)");
  // The umask makes the socket file appear with its final mode: there is no window in which a
  // non-root user could connect between bind() and chmod().
  const mode_t old_umask = ::umask(static_cast<mode_t>(~options_.mode & 0777));
  const int rc = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (rc < 0) return SysError("binding control socket " + path, bind_errno);
  if (::chmod(path.c_str(), options_.mode) < 0) return SysError("chmod " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  if (::listen(listen_.get(), 16) < 0) return SysError("listen on " + path);
  return loop_.Add(listen_.get(), EPOLLIN, [this](uint32_t) { OnListenReady(); });
}

ControlServer::~ControlServer() {
  for (auto& [fd, c] : clients_) loop_.Remove(fd);
  clients_.clear();
  if (listen_.valid()) {
    loop_.Remove(listen_.get());
    listen_.Reset();
    // Only unlink the file we created: if it was replaced meanwhile it belongs to someone else.
    struct stat st {};
    if (ino_ != 0 && ::stat(options_.path.c_str(), &st) == 0 && st.st_dev == dev_ &&
        st.st_ino == ino_) {
      ::unlink(options_.path.c_str());
    }
  }
}

void ControlServer::OnListenReady() {
  // Accept everything pending; level-triggered epoll calls us again if we stop early.
  for (int i = 0; i < 64; ++i) {
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        static RateLimited limit(std::chrono::seconds(5));
        if (limit.Allow()) MPROXY_LOG(kWarn) << "control socket accept: " << std::strerror(errno);
      }
      return;
    }
    if (clients_.size() >= options_.max_clients) {
      counters_.Inc(ControlCounter::kRefused);
      continue;  // closed by UniqueFd
    }
    const int raw = fd.get();
    if (auto r = loop_.Add(raw, EPOLLIN, [this, raw](uint32_t ev) { OnClientReady(raw, ev); });
        !r) {
      MPROXY_LOG(kWarn) << "control client: " << r.error().message;
      continue;
    }
    counters_.Inc(ControlCounter::kAccepted);
    Client& c = clients_[raw];
    c.fd = std::move(fd);
  }
}

void ControlServer::CloseClient(int fd) {
  loop_.Remove(fd);
  clients_.erase(fd);  // closes the fd
}

void ControlServer::Respond(Client& c, const cli::Response& r) {
  if (!r.ok) counters_.Inc(ControlCounter::kErrorResponses);
  auto line = cli::EncodeResponse(r);
  if (!line) line = cli::EncodeResponse(cli::Response::Fail(line.error().message));
  if (line) c.out += line.value();
}

void ControlServer::ProcessInput(Client& c) {
  size_t start = 0;
  for (;;) {
    const size_t nl = c.in.find('\n', start);
    if (nl == std::string::npos) break;
    const std::string_view line(c.in.data() + start, nl - start);
    start = nl + 1;
    if (line.empty() || line == "\r") continue;
    if (line.size() > options_.max_request_bytes) {
      counters_.Inc(ControlCounter::kTooLarge);
      Respond(c, cli::Response::Fail("request too large"));
      c.close_after_write = true;
      c.in.clear();
      return;
    }
    auto req = cli::DecodeRequest(line);
    if (!req) {
      counters_.Inc(ControlCounter::kMalformed);
      Respond(c, cli::Response::Fail("malformed request: " + req.error().message));
      continue;
    }
    counters_.Inc(ControlCounter::kRequests);
    Respond(c, registry_.Dispatch(*req));
  }
  c.in.erase(0, start);
  // A partial line already over the limit will never become a valid request.
  if (c.in.size() > options_.max_request_bytes) {
    counters_.Inc(ControlCounter::kTooLarge);
    Respond(c, cli::Response::Fail("request too large"));
    c.close_after_write = true;
    c.in.clear();
  }
}

bool ControlServer::Flush(Client& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    return false;  // EPIPE, ECONNRESET: the client is gone
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out.size() - c.out_off > options_.max_pending_output) {
    counters_.Inc(ControlCounter::kSlowClients);
    return false;
  }
  const bool pending = !c.out.empty();
  if (pending != c.want_write) {
    const uint32_t events =
        pending ? (c.close_after_write ? EPOLLOUT : EPOLLIN | EPOLLOUT) : EPOLLIN;
    if (!loop_.Modify(c.fd.get(), events)) return false;
    c.want_write = pending;
  }
  return !(c.close_after_write && !pending);
}

void ControlServer::OnClientReady(int fd, uint32_t events) {
  const auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = it->second;

  bool eof = false;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && !c.close_after_write) {
    // Bounded read per wake-up so one chatty client cannot starve the packet path.
    char buf[16384];
    for (int i = 0; i < 8; ++i) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        if (c.in.size() > options_.max_request_bytes + sizeof(buf)) break;
        continue;
      }
      if (n == 0) {
        eof = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN) {
        CloseClient(fd);
        return;
      }
      break;
    }
    ProcessInput(c);
  }
  if (eof) c.close_after_write = true;  // answer what was asked, then close
  if (!Flush(c)) CloseClient(fd);
}

}  // namespace mproxy::proxy
