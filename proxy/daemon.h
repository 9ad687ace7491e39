// mproxyd's core: wires the queue, the engine, the raw sender, the rules and the control socket
// into one epoll loop.
//
//   NFQUEUE readable → ReceiveBatch → engine->OnPacket() per packet → SetVerdict per packet →
//   FlushVerdicts (one sendmsg, pitfall 5) → forged packets out through the raw sender →
//   re-arm the timerfd at engine->NextTimeout().
//
//   rtnetlink monitor readable → drain every pending notification → refresh the interfaces at
//   once after a quiet interval, else once when interface_refresh_interval has passed (the same
//   timerfd, armed at the earlier of the two deadlines). A control command first applies a
//   refresh that is pending, so it never acts on interface state older than what was notified.
//
// Lifecycle (Start):  control socket (refuse if another daemon answers) → NFQUEUE bind (refuse if
// the queue is taken) → RemoveStale rules → Install rules → managed interfaces (learn, sweep our
// stale policy routing, install it; the engine gets the interfaces) → loop.
// The queue is bound before the stale sweep (not after) so that a second daemon started on the
// same queue fails on the bind and never touches the running daemon's rules.
// Stop: Remove rules → drain what is still queued → unbind queue → remove policy routing →
// remove the socket file. Every
// exit path after Start() (SIGTERM, SIGINT, a fatal loop error, a failed startup step, the
// destructor) goes through Stop(), so rules are never left behind by a clean exit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "packet/counters.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/control_server.h"
#include "proxy/engines.h"
#include "proxy/event_loop.h"
#include "proxy/interface_manager.h"
#include "proxy/nfqueue.h"
#include "proxy/packet_io.h"
#include "proxy/raw_socket.h"

namespace mproxy::proxy {

enum class DaemonCounter : size_t {
  kEnginePackets,    // packets handed to the engine
  kBypassedEngine,   // truncated or payload-less packets accepted without the engine (pitfall 3)
  kForgedSent,       // forged packets sent
  kForgedFailed,     // forged packets the raw sender could not send
  kTimerFires,       // engine timer callbacks
  kReceiveErrors,    // ReceiveBatch errors (the loop continues)
  kFlushErrors,      // FlushVerdicts errors (the loop continues)
  kInterfaceSyncs,   // interface/routing refreshes run (full re-read and re-sync) and succeeded
  kInterfaceErrors,  // refreshes that failed (logged; retried at the next notification)
  kInterfaceNotifications,  // rtnetlink notifications received (a lost batch counts as one),
                            // the echoes of our own route changes excepted
  kInterfaceCoalesced,      // notifications folded into a refresh another one scheduled
  kInterfaceForced,         // refreshes run early because a control command came in
  kInterfaceOwnEchoes,      // notifications of our own routing changes (not refreshed for)
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(DaemonCounter::kCount)>
    kDaemonCounterNames{"DaemonEnginePackets",      "DaemonBypassedEngine",
                        "DaemonForgedSent",         "DaemonForgedFailed",
                        "DaemonTimerFires",         "DaemonReceiveErrors",
                        "DaemonFlushErrors",        "DaemonInterfaceSyncs",
                        "DaemonInterfaceErrors",    "DaemonInterfaceNotifications",
                        "DaemonInterfaceCoalesced", "DaemonInterfaceForced",
                        "DaemonInterfaceOwnEchoes"};
using DaemonCounters = CounterSet<DaemonCounter, kDaemonCounterNames>;

struct DaemonConfig {
  std::string engine_name = "passthrough";
  NfqueueOptions queue;
  RawSenderOptions raw;
  ControlServerOptions control;
  // Block SIGTERM/SIGINT/SIGHUP and read them from a signalfd (off in unit tests).
  bool handle_signals = true;
  // Upper bound on the batches drained from the queue at stop, after the rules are gone.
  int drain_batches = 256;
  // At most one interface refresh (links, addresses, routes and rules dumped, policy routing
  // re-synced) per this interval, however many rtnetlink notifications arrive: a burst (a
  // flapping link, route churn) must not keep the packet path waiting behind repeated dumps.
  // The first notification after a quiet interval is refreshed at once; the rest of a burst
  // in one refresh when the interval has passed. Zero: a refresh at every wake-up.
  std::chrono::milliseconds interface_refresh_interval{20};
  // Free-form facts shown by `mproxyctl status` (ports, fail policy, ...).
  nlohmann::json status_extra = nlohmann::json::object();
};

// What the daemon runs with. Anything left empty gets the real implementation in Start():
// NfqueueSource for the queue, RawSender for forged packets, the steady clock. `rules` empty means
// the rules are managed outside the daemon (--no-rules).
struct DaemonDeps {
  std::unique_ptr<packet::Engine> engine;  // required
  std::function<Result<std::unique_ptr<PacketQueue>>()> open_queue;
  std::unique_ptr<PacketSender> sender;
  std::unique_ptr<RuleInstaller> rules;
  // Managed interfaces and their policy routing (--interfaces); empty: no subflow management.
  std::unique_ptr<InterfaceManager> interfaces;
  const packet::Clock* clock = nullptr;
};

class Daemon {
 public:
  Daemon(DaemonConfig config, DaemonDeps deps);
  ~Daemon();  // Stop() if still running
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // The command registry, to add engine-specific commands before or after Start().
  CommandRegistry& commands() { return commands_; }
  packet::Engine& engine() { return *engine_; }
  // Handed to EngineSpec::register_commands: now() and emit() are the daemon's; the engine sets
  // set_interfaces if it wants the managed interfaces.
  EngineContext& engine_context() { return engine_context_; }

  // Brings everything up in the order above. On failure everything already set up is torn down
  // again (rules included) and the error says which step failed.
  Result<void> Start();
  // Runs until a stop is requested (signal, RequestStop()) or the loop fails.
  Result<void> Run();
  // One epoll wait of at most timeout_ms; for tests.
  Result<int> RunOnce(int timeout_ms);
  void RequestStop() { stop_requested_ = true; }
  [[nodiscard]] bool stop_requested() const { return stop_requested_; }
  // Tears down in the order above; idempotent. Returns the first error (after trying every step).
  Result<void> Stop();

  // The data-path step, public for tests: one batch from the queue through the engine.
  void ProcessBatch();
  // Timer step: runs the engine's timers if due.
  void ProcessTimer();

  // Command payloads ("status", "stats").
  [[nodiscard]] nlohmann::json Status() const;
  [[nodiscard]] nlohmann::json Stats() const;
  [[nodiscard]] const DaemonCounters& counters() const { return counters_; }
  [[nodiscard]] bool rules_installed() const { return rules_installed_; }
  [[nodiscard]] bool running() const { return started_; }

 private:
  Result<void> StartSteps();
  Result<void> SetupSignals();
  Result<void> SetupTimer();
  void OnSignal();
  void ArmTimer();
  void SendForged();
  void RegisterBuiltinCommands();
  void OnInterfaceEvent();
  // Reads the pending notifications; returns how many there were (counted).
  size_t DrainInterfaceNotifications();
  void RefreshInterfaces(packet::Time now);
  // Before a control command: a change already notified (pending or still unread) is applied
  // now, so `handover` right after a link went down sees the link down.
  void RefreshInterfacesIfPending();
  // The timerfd's deadline: the engine's, or a pending interface refresh if that is earlier.
  [[nodiscard]] std::optional<packet::Time> NextDeadline() const;
  void PushInterfaces();

  DaemonConfig config_;
  std::unique_ptr<packet::Engine> engine_;
  std::function<Result<std::unique_ptr<PacketQueue>>()> open_queue_;
  std::unique_ptr<PacketSender> sender_;
  std::unique_ptr<RuleInstaller> rules_;
  std::unique_ptr<InterfaceManager> interfaces_;
  const packet::Clock* clock_;
  EngineContext engine_context_;

  CommandRegistry commands_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<PacketQueue> queue_;
  UniqueFd timer_fd_;
  UniqueFd signal_fd_;
  std::optional<packet::Time> timer_armed_at_;  // deadline the timerfd is armed for
  std::optional<packet::Time> interface_due_;   // a deferred interface refresh runs then
  std::optional<packet::Time> interface_last_refresh_;

  packet::PacketOut out_;
  packet::Actions actions_;
  bool started_ = false;
  bool rules_installed_ = false;
  bool stop_requested_ = false;
  std::chrono::steady_clock::time_point start_time_;
  DaemonCounters counters_;
};

}  // namespace mproxy::proxy
