#include "proxy/daemon.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "proxy/log.h"

#ifndef MPROXY_VERSION
#define MPROXY_VERSION "unknown"
#endif

namespace mproxy::proxy {
namespace {

class SteadyClock final : public packet::Clock {
 public:
  [[nodiscard]] packet::Time Now() const override { return std::chrono::steady_clock::now(); }
};
const SteadyClock kSteadyClock;

nlohmann::json CountersJson(const std::function<void(const CounterVisitor&)>& for_each) {
  nlohmann::json j = nlohmann::json::object();
  for_each([&](std::string_view name, uint64_t value) { j[std::string(name)] = value; });
  return j;
}

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

Daemon::Daemon(DaemonConfig config, DaemonDeps deps)
    : config_(std::move(config)),
      engine_(std::move(deps.engine)),
      open_queue_(std::move(deps.open_queue)),
      sender_(std::move(deps.sender)),
      rules_(std::move(deps.rules)),
      interfaces_(std::move(deps.interfaces)),
      clock_(deps.clock != nullptr ? deps.clock : &kSteadyClock) {
  engine_context_.now = [this] { return clock_->Now(); };
  engine_context_.emit = [this](packet::Actions& actions) {
    // Control handlers run between batches, so actions_ is empty here; appending keeps this
    // correct even if that ever changes.
    for (auto& f : actions.forged) actions_.forged.push_back(std::move(f));
    actions.Clear();
    SendForged();
    ArmTimer();
  };
  if (!open_queue_) {
    open_queue_ = [this]() -> Result<std::unique_ptr<PacketQueue>> {
      auto q = NfqueueSource::Open(config_.queue);
      if (!q) return q.error();
      const NfqueueSource& src = *q.value();
      MPROXY_LOG(kInfo) << "NFQUEUE " << src.queue_num() << " bound (rcvbuf "
                        << src.rcvbuf_granted() << " bytes, maxlen " << config_.queue.queue_maxlen
                        << ", gso " << (config_.queue.gso ? "on" : "off") << ", fail-open "
                        << (config_.queue.fail_open ? "on" : "off") << ")";
      return std::unique_ptr<PacketQueue>(std::move(q.value()));
    };
  }
  RegisterBuiltinCommands();
}

Daemon::~Daemon() {
  // Stop() only allocates (log lines, error strings); an allocation failure while tearing down
  // must not turn into std::terminate with our rules still installed half-way.
  try {
    (void)Stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch)
  }
}

void Daemon::RegisterBuiltinCommands() {
  commands_.Register("status", "daemon pid, uptime, engine, queue, rules, packets seen",
                     [this](const nlohmann::json&) { return cli::Response::Ok(Status()); });
  commands_.Register("stats", "all counters: nfqueue, kernel queue, raw sender, engine, control",
                     [this](const nlohmann::json&) { return cli::Response::Ok(Stats()); });
  commands_.Register("help", "the commands this daemon understands", [this](const nlohmann::json&) {
    nlohmann::json list = nlohmann::json::object();
    for (const auto& [name, help] : commands_.List()) list[name] = help;
    return cli::Response::Ok(nlohmann::json{{"commands", std::move(list)}});
  });
}

Result<void> Daemon::Start() {
  if (started_) return {};
  if (!engine_) return MakeError("no engine", EINVAL);
  started_ = true;  // from here on, Stop() tears down whatever was set up
  start_time_ = std::chrono::steady_clock::now();
  auto r = StartSteps();
  // The caller reports the error (mproxyd prints it as its last line); Stop() undoes the steps
  // that succeeded.
  if (!r) (void)Stop();
  return r;
}

Result<void> Daemon::StartSteps() {
  auto loop = EventLoop::Create();
  if (!loop) return loop.error();
  loop_ = std::move(loop.value());

  // Signals first: a SIGTERM during the (slow) rule installation stays pending and stops the
  // daemon as soon as the loop runs, through the same clean path.
  if (config_.handle_signals) {
    if (auto r = SetupSignals(); !r) return r;
  }
  if (auto r = SetupTimer(); !r) return r;

  auto control = ControlServer::Open(config_.control, commands_, *loop_);
  if (!control) {
    Error e = control.error();
    e.message = "control socket: " + e.message;
    return e;
  }
  control_ = std::move(control.value());

  auto queue = open_queue_();
  if (!queue) return queue.error();
  queue_ = std::move(queue.value());
  if (auto r = loop_->Add(queue_->fd(), EPOLLIN, [this](uint32_t) { ProcessBatch(); }); !r) {
    return r;
  }

  if (!sender_) {
    auto sender = RawSender::Open(config_.raw);
    if (!sender) return sender.error();
    sender_ = std::move(sender.value());
  }

  if (rules_) {
    auto stale = rules_->RemoveStale();
    if (!stale) {
      Error e = stale.error();
      e.message = "removing stale rules: " + e.message;
      return e;
    }
    if (*stale > 0)
      MPROXY_LOG(kInfo) << "removed " << *stale << " stale chain(s) of an earlier run";
    if (auto r = rules_->Install(); !r) {
      // The executor already rolls back a half-applied plan; sweep once more so nothing of ours
      // is left whatever happened.
      (void)rules_->RemoveStale();
      Error e = r.error();
      e.message = "installing rules: " + e.message;
      return e;
    }
    rules_installed_ = true;
  }
  if (interfaces_) {
    if (auto r = interfaces_->Start(); !r) {
      Error e = r.error();
      e.message = "interfaces: " + e.message;
      return e;
    }
    if (interfaces_->monitor_fd() >= 0) {
      if (auto r = loop_->Add(interfaces_->monitor_fd(), EPOLLIN,
                              [this](uint32_t) { OnInterfaceEvent(); });
          !r) {
        return r;
      }
    }
    commands_.SetBeforeDispatch([this] { RefreshInterfacesIfPending(); });
    PushInterfaces();
  }
  ArmTimer();
  MPROXY_LOG(kInfo) << "mproxyd " << MPROXY_VERSION << " running: engine " << config_.engine_name
                    << ", queue " << config_.queue.queue_num << ", control socket "
                    << config_.control.path << (rules_ ? "" : " (rules managed externally)");
  return {};
}

Result<void> Daemon::SetupSignals() {
  // A peer closing a socket must not kill the daemon; every send also uses MSG_NOSIGNAL.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, nullptr);
  const sigset_t set = DaemonSignals();
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return SysError("sigprocmask");
  signal_fd_ = UniqueFd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_.valid()) return SysError("signalfd");
  return loop_->Add(signal_fd_.get(), EPOLLIN, [this](uint32_t) { OnSignal(); });
}

Result<void> Daemon::SetupTimer() {
  timer_fd_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_fd_.valid()) return SysError("timerfd_create");
  return loop_->Add(timer_fd_.get(), EPOLLIN, [this](uint32_t) { ProcessTimer(); });
}

void Daemon::OnSignal() {
  signalfd_siginfo info{};
  while (::read(signal_fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    const int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGTERM || sig == SIGINT) {
      MPROXY_LOG(kInfo) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", stopping";
      stop_requested_ = true;
    } else if (sig == SIGHUP) {
      MPROXY_LOG(kInfo) << "SIGHUP ignored (nothing to reload; restart to change the config)";
    }
  }
}

Result<void> Daemon::Run() {
  if (!started_) return MakeError("daemon not started", EINVAL);
  while (!stop_requested_) {
    auto r = loop_->RunOnce(-1);
    if (!r) return r.error();
  }
  return {};
}

Result<int> Daemon::RunOnce(int timeout_ms) {
  if (!started_) return MakeError("daemon not started", EINVAL);
  return loop_->RunOnce(timeout_ms);
}

void Daemon::ProcessBatch() {
  auto batch = queue_->ReceiveBatch();
  if (!batch) {
    counters_.Inc(DaemonCounter::kReceiveErrors);
    static RateLimited limit(std::chrono::seconds(1));
    if (limit.Allow()) MPROXY_LOG(kWarn) << batch.error().message;
    return;
  }
  if (batch->empty()) return;
  const packet::Time now = clock_->Now();
  for (QueuedPacket& p : *batch) {
    out_.Reset();
    if (p.truncated || !p.has_payload) {
      // Pitfall 3: the engine never sees a partial packet; the kernel keeps the original.
      counters_.Inc(DaemonCounter::kBypassedEngine);
      queue_->SetVerdict(p, out_);
      continue;
    }
    counters_.Inc(DaemonCounter::kEnginePackets);
    engine_->OnPacket(now, p.meta, p.payload, out_, actions_);
    queue_->SetVerdict(p, out_);
  }
  // Pitfall 5: the whole batch's verdicts in one sendmsg, before the next receive.
  if (auto r = queue_->FlushVerdicts(); !r) {
    counters_.Inc(DaemonCounter::kFlushErrors);
    static RateLimited limit(std::chrono::seconds(1));
    if (limit.Allow()) MPROXY_LOG(kWarn) << r.error().message;
  }
  SendForged();
  ArmTimer();
}

void Daemon::PushInterfaces() {
  if (!interfaces_) return;
  auto list = interfaces_->LocalInterfaces();
  for (const auto& i : list) {
    std::string addrs;
    for (const auto& a : i.addresses) addrs += (addrs.empty() ? "" : " ") + a.ToString();
    MPROXY_LOG(kInfo) << "interface " << i.name << " (ifindex " << i.ifindex
                      << "): " << (addrs.empty() ? "no usable address" : addrs);
  }
  if (engine_context_.set_interfaces) engine_context_.set_interfaces(std::move(list));
}

size_t Daemon::DrainInterfaceNotifications() {
  const uint64_t own_before = interfaces_->own_notifications();
  const size_t n = interfaces_->DrainNotifications();
  counters_.Inc(DaemonCounter::kInterfaceNotifications, n);
  counters_.Inc(DaemonCounter::kInterfaceOwnEchoes, interfaces_->own_notifications() - own_before);
  return n;
}

void Daemon::OnInterfaceEvent() {
  // Everything pending is read at once (one wake-up, however many notifications); the refresh
  // itself is rate-limited to one per interface_refresh_interval.
  const size_t n = DrainInterfaceNotifications();
  if (n == 0) return;
  if (interface_due_) {  // a refresh is scheduled already: these ride along
    counters_.Inc(DaemonCounter::kInterfaceCoalesced, n);
    return;
  }
  counters_.Inc(DaemonCounter::kInterfaceCoalesced, n - 1);
  const packet::Time now = clock_->Now();
  const auto interval = config_.interface_refresh_interval;
  if (!interface_last_refresh_ || now - *interface_last_refresh_ >= interval) {
    RefreshInterfaces(now);  // after a quiet interval: at once
    return;
  }
  interface_due_ = *interface_last_refresh_ + interval;
  ArmTimer();
}

void Daemon::RefreshInterfacesIfPending() {
  if (!interfaces_) return;
  // A notification may be unread still: the control socket's event can come first in a wake-up.
  const size_t n = DrainInterfaceNotifications();
  if (n == 0 && !interface_due_) return;
  if (n > 0) counters_.Inc(DaemonCounter::kInterfaceCoalesced, interface_due_ ? n : n - 1);
  counters_.Inc(DaemonCounter::kInterfaceForced);
  RefreshInterfaces(clock_->Now());
  ArmTimer();
}

void Daemon::RefreshInterfaces(packet::Time now) {
  interface_due_.reset();
  interface_last_refresh_ = now;
  auto changed = interfaces_->Resync();
  if (!changed) {
    counters_.Inc(DaemonCounter::kInterfaceErrors);
    static RateLimited limit(std::chrono::seconds(1));
    if (limit.Allow()) MPROXY_LOG(kWarn) << "interfaces: " << changed.error().message;
    return;
  }
  counters_.Inc(DaemonCounter::kInterfaceSyncs);
  if (*changed) PushInterfaces();
}

void Daemon::ProcessTimer() {
  uint64_t expirations = 0;
  (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
  timer_armed_at_.reset();
  const packet::Time now = clock_->Now();
  const auto next = engine_->NextTimeout();
  if (next && *next <= now) {
    counters_.Inc(DaemonCounter::kTimerFires);
    engine_->OnTimer(now, actions_);
    SendForged();
  }
  if (interface_due_ && *interface_due_ <= now) RefreshInterfaces(now);
  ArmTimer();
}

std::optional<packet::Time> Daemon::NextDeadline() const {
  auto next = engine_->NextTimeout();
  if (interface_due_ && (!next || *interface_due_ < *next)) next = interface_due_;
  return next;
}

void Daemon::SendForged() {
  if (actions_.forged.empty()) return;
  for (const packet::ForgedPacket& f : actions_.forged) {
    if (auto r = sender_->Send(f); !r) {
      counters_.Inc(DaemonCounter::kForgedFailed);
      static RateLimited limit(std::chrono::seconds(1));
      if (limit.Allow()) MPROXY_LOG(kWarn) << r.error().message;
    } else {
      counters_.Inc(DaemonCounter::kForgedSent);
    }
  }
  actions_.Clear();
}

void Daemon::ArmTimer() {
  if (!timer_fd_.valid()) return;
  const auto next = NextDeadline();
  if (next == timer_armed_at_) return;  // the common case: no syscall per batch
  itimerspec spec{};
  if (next) {
    // Relative arming keeps this correct with an injected clock too; a deadline already passed
    // fires at once (a zero it_value would disarm instead).
    const auto delay =
        std::max<packet::Duration>(*next - clock_->Now(), std::chrono::nanoseconds(1));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(delay).count();
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<decltype(spec.it_value.tv_nsec)>(ns % 1000000000);
  }
  if (timerfd_settime(timer_fd_.get(), 0, &spec, nullptr) < 0) {
    MPROXY_LOG(kError) << "timerfd_settime: " << std::strerror(errno);
    return;
  }
  timer_armed_at_ = next;
}

Result<void> Daemon::Stop() {
  if (!started_) return {};
  Result<void> first;
  if (rules_installed_) {
    // Rules first: from now on no new packet enters the queue.
    if (auto r = rules_->Remove(); !r) {
      MPROXY_LOG(kError) << "removing rules: " << r.error().message;
      first = r;
    } else {
      MPROXY_LOG(kInfo) << "rules removed";
    }
    rules_installed_ = false;
  }
  if (queue_) {
    // Whatever is still queued gets its verdict through the engine instead of the kernel's
    // drop-on-unbind.
    for (int i = 0; i < config_.drain_batches; ++i) {
      const uint64_t before = counters_.Get(DaemonCounter::kEnginePackets) +
                              counters_.Get(DaemonCounter::kBypassedEngine);
      ProcessBatch();
      if (counters_.Get(DaemonCounter::kEnginePackets) +
              counters_.Get(DaemonCounter::kBypassedEngine) ==
          before) {
        break;
      }
    }
    if (loop_) loop_->Remove(queue_->fd());
    queue_.reset();
  }
  if (interfaces_) {
    commands_.SetBeforeDispatch(nullptr);
    interface_due_.reset();
    interface_last_refresh_.reset();
    if (loop_ && interfaces_->monitor_fd() >= 0) loop_->Remove(interfaces_->monitor_fd());
    if (auto r = interfaces_->Stop(); !r) {
      MPROXY_LOG(kError) << "removing policy routing: " << r.error().message;
      if (first) first = r;
    }
  }
  control_.reset();
  if (loop_ && timer_fd_.valid()) loop_->Remove(timer_fd_.get());
  timer_fd_.Reset();
  timer_armed_at_.reset();
  if (signal_fd_.valid()) {
    if (loop_) loop_->Remove(signal_fd_.get());
    signal_fd_.Reset();
    const sigset_t set = DaemonSignals();
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
  }
  loop_.reset();
  started_ = false;
  MPROXY_LOG(kInfo) << "stopped";
  return first;
}

nlohmann::json Daemon::Status() const {
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - start_time_)
                          .count();
  nlohmann::json j = {
      {"pid", static_cast<int64_t>(::getpid())},
      {"version", MPROXY_VERSION},
      {"uptime_s", uptime},
      {"engine", config_.engine_name},
      {"queue", config_.queue.queue_num},
      {"rules", rules_ ? (rules_installed_ ? "installed" : "not installed") : "external"},
      {"packets", counters_.Get(DaemonCounter::kEnginePackets) +
                      counters_.Get(DaemonCounter::kBypassedEngine)},
      {"control_socket", config_.control.path},
  };
  if (interfaces_) j["interfaces"] = interfaces_->StatusJson();
  for (const auto& [k, v] : config_.status_extra.items()) j[k] = v;
  return j;
}

nlohmann::json Daemon::Stats() const {
  nlohmann::json j = nlohmann::json::object();
  j["daemon"] = CountersJson([this](const CounterVisitor& v) { counters_.ForEach(v); });
  if (queue_) {
    j["nfqueue"] = CountersJson([this](const CounterVisitor& v) { queue_->ForEachCounter(v); });
  }
  // Pitfall 4: queue_dropped / user_dropped are retransmissions waiting to happen.
  auto kq = ReadKernelQueueStats(config_.queue.queue_num);
  if (kq && kq->has_value()) {
    const KernelQueueStats s = **kq;
    j["kernel_queue"] =
        CountersJson([&s](const CounterVisitor& v) { VisitKernelQueueStats(s, v); });
  } else {
    j["kernel_queue"] = nullptr;
  }
  if (sender_) {
    j["raw"] = CountersJson([this](const CounterVisitor& v) { sender_->ForEachCounter(v); });
  }
  j["engine"] = CountersJson([this](const CounterVisitor& v) { engine_->ForEachCounter(v); });
  if (control_) {
    j["control"] = CountersJson([this](const CounterVisitor& v) { control_->ForEachCounter(v); });
  }
  return j;
}

}  // namespace mproxy::proxy
