// The daemon's wiring with fakes for the queue, the raw sender, the rules and the engine: startup
// and teardown order, rules removed on every exit path, the per-batch data path (engine, one flush
// per batch, forged packets after the verdicts, truncated packets never shown to the engine),
// timers, signals and the built-in control commands.
#include "proxy/daemon.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "cli/control_client.h"
#include "proxy/engines.h"
#include "proxy/mptcp_commands.h"
#include "tests/unit/proxy/fake_route_netlink.h"

namespace mproxy::proxy {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using Log = std::vector<std::string>;

struct FakeClock final : packet::Clock {
  packet::Time now = packet::Time{} + 1h;
  [[nodiscard]] packet::Time Now() const override { return now; }
};

class FakeQueue final : public PacketQueue {
 public:
  explicit FakeQueue(Log& log) : log_(log), efd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    log_.push_back("queue open");
  }
  ~FakeQueue() override { log_.push_back("queue close"); }

  // Queues a batch; makes the fd readable.
  void Push(std::vector<std::vector<uint8_t>> packets, bool truncated = false) {
    pending_.push_back({std::move(packets), truncated});
    const uint64_t one = 1;
    EXPECT_EQ(write(efd_.get(), &one, sizeof(one)), 8);
  }

  [[nodiscard]] int fd() const override { return efd_.get(); }
  Result<std::span<QueuedPacket>> ReceiveBatch() override {
    uint64_t v;
    (void)!read(efd_.get(), &v, sizeof(v));
    batch_.clear();
    storage_.clear();
    if (pending_.empty()) return std::span<QueuedPacket>{};
    auto [pkts, truncated] = std::move(pending_.front());
    pending_.pop_front();
    storage_ = std::move(pkts);
    for (auto& bytes : storage_) {
      QueuedPacket p;
      p.id = next_id_++;
      p.payload = bytes;
      p.has_payload = true;
      p.truncated = truncated;
      batch_.push_back(p);
    }
    if (!pending_.empty()) {
      const uint64_t one = 1;
      EXPECT_EQ(write(efd_.get(), &one, sizeof(one)), 8);
    }
    return std::span<QueuedPacket>(batch_);
  }
  void SetVerdict(const QueuedPacket& pkt, const packet::PacketOut& out) override {
    verdicts.push_back({pkt.id, out.verdict, out.rewritten || out.patched_in_place});
    log_.push_back("verdict " + std::to_string(pkt.id));
  }
  Result<void> FlushVerdicts() override {
    ++flushes;
    log_.push_back("flush");
    return {};
  }
  void ForEachCounter(const CounterVisitor& visit) const override { visit("FakeFlushes", flushes); }

  struct V {
    uint32_t id;
    packet::Verdict verdict;
    bool modified;
  };
  std::vector<V> verdicts;
  uint64_t flushes = 0;

 private:
  Log& log_;
  UniqueFd efd_;
  std::deque<std::pair<std::vector<std::vector<uint8_t>>, bool>> pending_;
  std::vector<std::vector<uint8_t>> storage_;
  std::vector<QueuedPacket> batch_;
  uint32_t next_id_ = 1;
};

class FakeSender final : public PacketSender {
 public:
  explicit FakeSender(Log& log) : log_(log) {}
  Result<void> Send(const packet::ForgedPacket& pkt) override {
    log_.push_back("forged " + std::to_string(pkt.bytes.size()));
    return {};
  }
  void ForEachCounter(const CounterVisitor& visit) const override { visit("FakeSent", 0); }

 private:
  Log& log_;
};

class FakeRules final : public RuleInstaller {
 public:
  explicit FakeRules(Log& log, bool fail_install = false)
      : log_(log), fail_install_(fail_install) {}
  Result<void> Install() override {
    log_.push_back("install");
    if (fail_install_) return MakeError("iptables-restore failed (status 2): bad rule");
    return {};
  }
  Result<void> Remove() override {
    log_.push_back("remove");
    return {};
  }
  Result<int> RemoveStale() override {
    log_.push_back("stale");
    return 0;
  }

 private:
  Log& log_;
  bool fail_install_;
};

// Drops packets whose first byte is 0xdd, patches 0xee in place, forges one packet per 0xff
// packet, and asks for a timer when told to.
class FakeEngine final : public packet::Engine {
 public:
  explicit FakeEngine(Log& log) : log_(log) {}
  void OnPacket(packet::Time, const packet::PacketMeta&, packet::MutableBytes pkt,
                packet::PacketOut& out, packet::Actions& actions) override {
    log_.push_back("engine " + std::to_string(pkt.size()));
    ++packets;
    if (!pkt.empty() && pkt[0] == 0xdd) out.verdict = packet::Verdict::kDrop;
    if (!pkt.empty() && pkt[0] == 0xee) {
      pkt[1] = 0x11;
      out.patched_in_place = true;
    }
    if (!pkt.empty() && pkt[0] == 0xff) actions.forged.push_back({std::vector<uint8_t>(40), 0});
  }
  [[nodiscard]] std::optional<packet::Time> NextTimeout() const override { return timeout; }
  void OnTimer(packet::Time now, packet::Actions& actions) override {
    log_.push_back("timer");
    ++timers;
    timeout.reset();
    (void)now;
    actions.forged.push_back({std::vector<uint8_t>(20), 0});
  }
  void ForEachCounter(const CounterVisitor& visit) const override {
    visit("FakeEnginePackets", packets);
  }
  std::optional<packet::Time> timeout;
  uint64_t packets = 0;
  uint64_t timers = 0;

 private:
  Log& log_;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mproxy-daemon-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.engine_name = "fake";
    config_.control.path = dir_ + "/ctl.sock";
    config_.handle_signals = false;
    config_.queue.queue_num = 4321;  // not bound by anyone: kernel_queue stats are null
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(dir_);
  }

  void Make(bool fail_install = false, bool with_rules = true,
            std::unique_ptr<InterfaceManager> interfaces = nullptr) {
    DaemonDeps deps;
    deps.interfaces = std::move(interfaces);
    auto engine = std::make_unique<FakeEngine>(log_);
    engine_ = engine.get();
    deps.engine = std::move(engine);
    deps.open_queue = [this]() -> Result<std::unique_ptr<PacketQueue>> {
      auto q = std::make_unique<FakeQueue>(log_);
      queue_ = q.get();
      return std::unique_ptr<PacketQueue>(std::move(q));
    };
    deps.sender = std::make_unique<FakeSender>(log_);
    if (with_rules) deps.rules = std::make_unique<FakeRules>(log_, fail_install);
    deps.clock = &clock_;
    daemon_ = std::make_unique<Daemon>(config_, std::move(deps));
  }
  void Pump(int rounds = 3) {
    for (int i = 0; i < rounds; ++i) ASSERT_TRUE(daemon_->RunOnce(10).ok());
  }
  Result<cli::Response> Call(const std::string& cmd) {
    auto c = cli::ControlClient::Connect(config_.control.path);
    if (!c) return c.error();
    if (auto r = c->Send({cmd, {}}, 1s); !r) return r.error();
    Pump();
    return c->Receive(1s);
  }

  std::string dir_;
  DaemonConfig config_;
  Log log_;
  FakeClock clock_;
  FakeEngine* engine_ = nullptr;
  FakeQueue* queue_ = nullptr;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(DaemonTest, StartAndStopOrder) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  EXPECT_TRUE(fs::exists(config_.control.path));
  EXPECT_TRUE(daemon_->rules_installed());
  EXPECT_EQ(log_, (Log{"queue open", "stale", "install"}));
  log_.clear();
  ASSERT_TRUE(daemon_->Stop().ok());
  EXPECT_EQ(log_, (Log{"remove", "queue close"}));
  EXPECT_FALSE(fs::exists(config_.control.path));
  EXPECT_FALSE(daemon_->rules_installed());
  log_.clear();
  ASSERT_TRUE(daemon_->Stop().ok());  // idempotent
  EXPECT_TRUE(log_.empty());
}

TEST_F(DaemonTest, FailedInstallTearsEverythingDown) {
  Make(/*fail_install=*/true);
  auto r = daemon_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("installing rules"), std::string::npos);
  EXPECT_EQ(log_, (Log{"queue open", "stale", "install", "stale", "queue close"}));
  EXPECT_FALSE(fs::exists(config_.control.path));
  EXPECT_FALSE(daemon_->running());
}

TEST_F(DaemonTest, QueueFailureLeavesNoRulesAndNoSocket) {
  DaemonDeps deps;
  deps.engine = std::make_unique<FakeEngine>(log_);
  deps.open_queue = []() -> Result<std::unique_ptr<PacketQueue>> {
    return MakeError("binding NFQUEUE 0: the queue is already bound by another process", EBUSY);
  };
  deps.sender = std::make_unique<FakeSender>(log_);
  deps.rules = std::make_unique<FakeRules>(log_);
  daemon_ = std::make_unique<Daemon>(config_, std::move(deps));
  auto r = daemon_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EBUSY);
  EXPECT_TRUE(log_.empty());  // the other daemon's rules were not touched
  EXPECT_FALSE(fs::exists(config_.control.path));
}

TEST_F(DaemonTest, DestructorStopsAndRemovesRules) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  log_.clear();
  daemon_.reset();
  EXPECT_EQ(log_, (Log{"remove", "queue close"}));
}

TEST_F(DaemonTest, WithoutRuleInstaller) {
  Make(false, /*with_rules=*/false);
  ASSERT_TRUE(daemon_->Start().ok());
  EXPECT_FALSE(daemon_->rules_installed());
  auto st = Call("status");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->data["rules"], "external");
}

TEST_F(DaemonTest, BatchGoesThroughEngineWithOneFlushThenForged) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  log_.clear();
  queue_->Push({std::vector<uint8_t>(10, 0x45), std::vector<uint8_t>(20, 0xff),
                std::vector<uint8_t>(30, 0xdd), std::vector<uint8_t>(40, 0xee)});
  Pump();
  EXPECT_EQ(log_, (Log{"engine 10", "verdict 1", "engine 20", "verdict 2", "engine 30", "verdict 3",
                       "engine 40", "verdict 4", "flush", "forged 40"}));
  ASSERT_EQ(queue_->verdicts.size(), 4u);
  EXPECT_EQ(queue_->verdicts[2].verdict, packet::Verdict::kDrop);
  EXPECT_TRUE(queue_->verdicts[3].modified);
  EXPECT_FALSE(queue_->verdicts[0].modified);
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kEnginePackets), 4u);
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kForgedSent), 1u);
}

TEST_F(DaemonTest, TruncatedPacketsBypassTheEngine) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  log_.clear();
  queue_->Push({std::vector<uint8_t>(10, 0xee)}, /*truncated=*/true);
  Pump();
  EXPECT_EQ(log_, (Log{"verdict 1", "flush"}));
  ASSERT_EQ(queue_->verdicts.size(), 1u);
  EXPECT_EQ(queue_->verdicts[0].verdict, packet::Verdict::kAccept);
  EXPECT_FALSE(queue_->verdicts[0].modified);
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kBypassedEngine), 1u);
}

TEST_F(DaemonTest, StopDrainsTheQueueAfterRemovingRules) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  queue_->Push({std::vector<uint8_t>(10, 0x45)});
  queue_->Push({std::vector<uint8_t>(11, 0x45)});
  log_.clear();
  ASSERT_TRUE(daemon_->Stop().ok());
  EXPECT_EQ(log_, (Log{"remove", "engine 10", "verdict 1", "flush", "engine 11", "verdict 2",
                       "flush", "queue close"}));
}

TEST_F(DaemonTest, EngineTimerFires) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  log_.clear();
  engine_->timeout = clock_.now + 1ms;
  queue_->Push({std::vector<uint8_t>(10, 0x45)});  // the daemon re-arms after each batch
  Pump();
  clock_.now += 5ms;
  for (int i = 0; i < 50 && engine_->timers == 0; ++i) ASSERT_TRUE(daemon_->RunOnce(20).ok());
  EXPECT_EQ(engine_->timers, 1u);
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kTimerFires), 1u);
  EXPECT_EQ(log_.back(), "forged 20");
}

TEST_F(DaemonTest, StatusStatsHelpCommands) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  queue_->Push({std::vector<uint8_t>(10, 0x45), std::vector<uint8_t>(10, 0x45)});
  Pump();

  auto st = Call("status");
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_TRUE(st->ok) << st->error;
  EXPECT_EQ(st->data["pid"], getpid());
  EXPECT_EQ(st->data["engine"], "fake");
  EXPECT_EQ(st->data["queue"], 4321);
  EXPECT_EQ(st->data["rules"], "installed");
  EXPECT_EQ(st->data["packets"], 2);
  EXPECT_TRUE(st->data.contains("uptime_s"));

  auto stats = Call("stats");
  ASSERT_TRUE(stats.ok());
  ASSERT_TRUE(stats->ok);
  EXPECT_EQ(stats->data["daemon"]["DaemonEnginePackets"], 2);
  EXPECT_EQ(stats->data["nfqueue"]["FakeFlushes"], 1);
  EXPECT_EQ(stats->data["engine"]["FakeEnginePackets"], 2);
  EXPECT_TRUE(stats->data["kernel_queue"].is_null());
  EXPECT_TRUE(stats->data["raw"].contains("FakeSent"));
  EXPECT_GE(stats->data["control"]["CtlRequests"], 1);

  auto help = Call("help");
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->data["commands"].contains("stats"));
}

TEST_F(DaemonTest, EngineCommandsSlotIntoTheRegistry) {
  Make();
  daemon_->commands().Register("conn show", "connections", [](const nlohmann::json&) {
    return cli::Response::Ok({{"connections", nlohmann::json::array()}});
  });
  ASSERT_TRUE(daemon_->Start().ok());
  auto r = Call("conn show");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->data["connections"].is_array());
}

TEST_F(DaemonTest, SecondDaemonOnTheSameSocketRefusesWithoutTouchingRules) {
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  Log other_log;
  DaemonDeps deps;
  deps.engine = std::make_unique<FakeEngine>(other_log);
  deps.open_queue = [&other_log]() -> Result<std::unique_ptr<PacketQueue>> {
    return std::unique_ptr<PacketQueue>(std::make_unique<FakeQueue>(other_log));
  };
  deps.sender = std::make_unique<FakeSender>(other_log);
  deps.rules = std::make_unique<FakeRules>(other_log);
  Daemon second(config_, std::move(deps));
  auto r = second.Start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("already running"), std::string::npos);
  EXPECT_TRUE(other_log.empty());
  EXPECT_TRUE(fs::exists(config_.control.path));  // the first daemon's socket survives
}

TEST_F(DaemonTest, SigtermStopsTheLoop) {
  config_.handle_signals = true;
  Make();
  ASSERT_TRUE(daemon_->Start().ok());
  ASSERT_EQ(raise(SIGTERM), 0);  // blocked: delivered through the signalfd
  ASSERT_TRUE(daemon_->Run().ok());
  EXPECT_TRUE(daemon_->stop_requested());
  log_.clear();
  ASSERT_TRUE(daemon_->Stop().ok());
  EXPECT_EQ(log_, (Log{"remove", "queue close"}));
}

std::unique_ptr<InterfaceManager> Interfaces(FakeKernel& k, std::vector<std::string> names) {
  InterfaceManagerOptions o;
  o.names = std::move(names);
  return std::make_unique<InterfaceManager>(o, std::make_unique<FakeRouteNetlink>(k));
}

size_t OurRules(const FakeKernel& k) {
  return static_cast<size_t>(std::count_if(
      k.rules.begin(), k.rules.end(), [](const auto& r) { return IsOurRule(RoutingConfig{}, r); }));
}

TEST_F(DaemonTest, EngineContextEmitsForgedPacketsAndRearmsTheTimer) {
  Make();
  std::optional<packet::Time> seen;
  daemon_->commands().Register("poke", "forge two packets", [this, &seen](const nlohmann::json&) {
    seen = daemon_->engine_context().now();
    packet::Actions a;
    a.forged.push_back({std::vector<uint8_t>(60), 3});
    a.forged.push_back({std::vector<uint8_t>(61), 3});
    engine_->timeout = clock_.now + 1ms;  // the command gave the engine a deadline
    daemon_->engine_context().emit(a);
    EXPECT_TRUE(a.forged.empty());
    return cli::Response::Ok();
  });
  ASSERT_TRUE(daemon_->Start().ok());
  log_.clear();
  auto r = Call("poke");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->ok);
  EXPECT_EQ(seen, clock_.now);
  EXPECT_EQ(log_, (Log{"forged 60", "forged 61"}));
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kForgedSent), 2u);
  // The timer was armed by emit(), not by a later batch.
  clock_.now += 5ms;
  for (int i = 0; i < 50 && engine_->timers == 0; ++i) ASSERT_TRUE(daemon_->RunOnce(20).ok());
  EXPECT_EQ(engine_->timers, 1u);
}

TEST_F(DaemonTest, ManagedInterfacesReachTheEngineAndRoutingIsRemovedAtStop) {
  FakeKernel k;
  MobileHost(k);
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  std::vector<std::vector<mptcp::LocalInterface>> pushed;
  daemon_->engine_context().set_interfaces = [&](std::vector<mptcp::LocalInterface> v) {
    pushed.push_back(std::move(v));
  };
  ASSERT_TRUE(daemon_->Start().ok());
  ASSERT_EQ(pushed.size(), 1u);
  ASSERT_EQ(pushed[0].size(), 2u);
  EXPECT_EQ(pushed[0][1].name, "eth1");
  EXPECT_EQ(pushed[0][1].ifindex, 3u);
  EXPECT_EQ(OurRules(k), 8u);

  auto st = Call("status");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->data["interfaces"][1]["name"], "eth1");
  EXPECT_EQ(st->data["interfaces"][1]["table"], 19793);

  // A new address arrives through the monitor socket in the loop.
  k.addrs.push_back({3, Ip("198.18.2.3"), 24, 0, 0x80});
  k.Notify();
  Pump();
  ASSERT_EQ(pushed.size(), 2u);
  EXPECT_EQ(pushed[1][1].addresses.size(), 3u);
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kInterfaceSyncs), 1u);
  EXPECT_EQ(OurRules(k), 9u);

  log_.clear();
  ASSERT_TRUE(daemon_->Stop().ok());
  EXPECT_EQ(log_, (Log{"remove", "queue close"}));
  EXPECT_EQ(OurRules(k), 0u);
}

TEST_F(DaemonTest, AFailedInterfaceResyncIsCountedAndTheLoopGoesOn) {
  FakeKernel k;
  MobileHost(k);
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  ASSERT_TRUE(daemon_->Start().ok());
  k.dump_error = ENOBUFS;
  k.Notify();
  Pump();
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kInterfaceErrors), 1u);
  k.dump_error = 0;
  k.addrs.push_back({3, Ip("198.18.2.3"), 24, 0, 0x80});
  clock_.now += config_.interface_refresh_interval;  // past the refresh interval: at once
  k.Notify();
  Pump();
  EXPECT_EQ(daemon_->counters().Get(DaemonCounter::kInterfaceSyncs), 1u);
  EXPECT_EQ(OurRules(k), 9u);
  auto stats = Call("stats");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->data["daemon"]["DaemonInterfaceErrors"], 1);
  daemon_.reset();  // before `k` goes: the daemon's stop removes its routing through it
  EXPECT_EQ(OurRules(k), 0u);
}

// Review #12: a burst of rtnetlink notifications (a flapping link, route churn) costs one or two
// refreshes, not one full dump of links, addresses, routes and rules per notification.
TEST_F(DaemonTest, ABurstOfInterfaceNotificationsIsRefreshedOnceOrTwice) {
  for (const auto interval : {0ms, 20ms}) {
    SCOPED_TRACE(interval.count());
    FakeKernel k;
    MobileHost(k);
    config_.interface_refresh_interval = interval;
    Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
    std::vector<std::vector<mptcp::LocalInterface>> pushed;
    daemon_->engine_context().set_interfaces = [&](std::vector<mptcp::LocalInterface> v) {
      pushed.push_back(std::move(v));
    };
    ASSERT_TRUE(daemon_->Start().ok());
    // 100 notifications, 0.1 ms apart, each handled in its own wake-up; eth1 gains an address
    // half-way and another at the very end.
    for (int i = 0; i < 100; ++i) {
      if (i == 50) k.addrs.push_back({3, Ip("198.18.2.3"), 24, 0, 0x80});
      if (i == 99) k.addrs.push_back({3, Ip("198.18.2.4"), 24, 0, 0x80});
      k.Notify();
      ASSERT_TRUE(daemon_->RunOnce(0).ok());
      clock_.now += 100us;
    }
    const auto& c = daemon_->counters();
    EXPECT_EQ(c.Get(DaemonCounter::kInterfaceNotifications), 100u);
    if (interval == 0ms) {
      // No debounce: what every notification cost before.
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 100u);
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceCoalesced), 0u);
    } else {
      // The first one at once, the other 99 wait for the interval to pass.
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);
      clock_.now += interval;
      for (int i = 0; i < 50 && c.Get(DaemonCounter::kInterfaceSyncs) < 2; ++i) {
        ASSERT_TRUE(daemon_->RunOnce(20).ok());  // the timerfd fires
      }
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 2u);
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceCoalesced), 98u);
      Pump();
      EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 2u);  // nothing else pending
    }
    ASSERT_FALSE(pushed.empty());
    EXPECT_EQ(pushed.back()[1].addresses.size(), 4u);  // the last change is in
    EXPECT_EQ(OurRules(k), 10u);

    // 100 notifications read in one wake-up: one refresh (after a quiet interval: at once).
    clock_.now += 1s;
    const uint64_t syncs = c.Get(DaemonCounter::kInterfaceSyncs);
    for (int i = 0; i < 100; ++i) k.Notify();
    ASSERT_TRUE(daemon_->RunOnce(0).ok());
    EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), syncs + 1);
    EXPECT_EQ(c.Get(DaemonCounter::kInterfaceNotifications), 200u);
    auto stats = Call("stats");
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->data["daemon"]["DaemonInterfaceNotifications"], 200);
    daemon_.reset();
  }
}

// Review #12: the first change after a quiet interval is applied at once; one that follows a
// refresh closely is applied when the interval has passed, not later.
TEST_F(DaemonTest, AnInterfaceChangeIsAppliedWithinTheRefreshInterval) {
  FakeKernel k;
  MobileHost(k);
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  std::vector<std::pair<packet::Time, std::vector<mptcp::LocalInterface>>> pushed;
  daemon_->engine_context().set_interfaces = [&](std::vector<mptcp::LocalInterface> v) {
    pushed.emplace_back(clock_.now, std::move(v));
  };
  ASSERT_TRUE(daemon_->Start().ok());
  ASSERT_EQ(pushed.size(), 1u);
  const auto& c = daemon_->counters();

  // Quiet since the start: applied in the same wake-up.
  clock_.now += 1s;
  k.addrs.push_back({3, Ip("198.18.2.3"), 24, 0, 0x80});
  k.Notify();
  ASSERT_TRUE(daemon_->RunOnce(0).ok());
  ASSERT_EQ(pushed.size(), 2u);
  EXPECT_EQ(pushed[1].second[1].addresses.size(), 3u);
  const packet::Time refreshed = clock_.now;

  // 5 ms later eth1 loses its carrier: not yet...
  clock_.now += 5ms;
  k.links[2].flags &= ~0x10000u;
  k.Notify();
  ASSERT_TRUE(daemon_->RunOnce(0).ok());
  EXPECT_EQ(pushed.size(), 2u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);
  // ...and at 20 ms after the previous refresh (the timerfd, armed for the rest of the interval).
  clock_.now = refreshed + 20ms;
  for (int i = 0; i < 50 && pushed.size() < 3; ++i) ASSERT_TRUE(daemon_->RunOnce(20).ok());
  ASSERT_EQ(pushed.size(), 3u);
  EXPECT_LE(pushed[2].first - refreshed, config_.interface_refresh_interval);
  EXPECT_TRUE(pushed[2].second[1].addresses.empty());
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceCoalesced), 0u);
  daemon_.reset();  // before `k` goes: the daemon's stop removes its routing through it
}

// Review #12: `mproxyctl handover` right after a link went down must see it down, even while the
// refresh is deferred or the notification is not read yet.
TEST_F(DaemonTest, AControlCommandSeesAPendingInterfaceChange) {
  FakeKernel k;
  MobileHost(k);
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  std::vector<mptcp::LocalInterface> engine_view;
  daemon_->engine_context().set_interfaces = [&](std::vector<mptcp::LocalInterface> v) {
    engine_view = std::move(v);
  };
  std::vector<size_t> wlan0_seen;  // wlan0's addresses as each probe found them
  daemon_->commands().Register("probe", "what the engine sees", [&](const nlohmann::json&) {
    wlan0_seen.push_back(engine_view.at(0).addresses.size());
    return cli::Response::Ok();
  });
  ASSERT_TRUE(daemon_->Start().ok());
  const auto& c = daemon_->counters();
  clock_.now += 1s;
  k.Notify();  // something unrelated: refreshed at once
  ASSERT_TRUE(daemon_->RunOnce(0).ok());
  ASSERT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);

  // wlan0 goes down 1 ms later: the refresh is deferred, the command comes first.
  clock_.now += 1ms;
  k.links[1].flags &= ~0x1u;
  k.Notify();
  ASSERT_TRUE(daemon_->RunOnce(0).ok());
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);
  auto r = Call("probe");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(wlan0_seen, (std::vector<size_t>{0}));
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 2u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceForced), 1u);

  // Back up, and the notification not even read when the command is dispatched.
  k.links[1].flags |= 0x1u;
  k.Notify();
  (void)daemon_->commands().Dispatch(cli::Request{"probe", {}});
  EXPECT_EQ(wlan0_seen, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceForced), 2u);
  // Nothing pending: a command costs no refresh.
  (void)daemon_->commands().Dispatch(cli::Request{"probe", {}});
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 3u);
  // The deferred refresh was consumed by the command: the timer runs none.
  clock_.now += 1s;
  Pump();
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 3u);
  daemon_.reset();
}

// Review #12: the route changes a refresh applies come back as notifications; they cost no
// second refresh. A route change anywhere else (the main table) still does.
TEST_F(DaemonTest, OurOwnRoutingChangesAreNotRefreshedFor) {
  FakeKernel k;
  MobileHost(k);
  k.echo_route_changes = true;
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  ASSERT_TRUE(daemon_->Start().ok());
  const auto& c = daemon_->counters();
  Pump();  // the echoes of what Start() installed
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceOwnEchoes), 7u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 0u);

  clock_.now += 1s;
  k.links[2].flags &= ~0x10000u;  // eth1 loses its carrier: its 4 routes of ours go
  k.Notify();
  ASSERT_TRUE(daemon_->RunOnce(0).ok());
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);
  EXPECT_FALSE(k.notifications.empty());  // the deletions' echoes
  clock_.now += 1s;
  Pump();
  EXPECT_TRUE(k.notifications.empty());
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 1u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceOwnEchoes), 11u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceNotifications), 1u);

  // The main table's default route through wlan0 changes: that one is followed.
  k.routes[0].priority = 50;
  k.Notify(rtnl::BuildRouteRequest(rtnl::Op::kAdd, k.routes[0], 0));
  Pump();
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), 2u);
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceNotifications), 2u);
  bool copied = false;
  for (const auto& r : k.routes) copied = copied || (r.table == 19792 && r.priority == 50);
  EXPECT_TRUE(copied);
  daemon_.reset();
}

// Someone else deletes a route from our tables (`ip route flush table 19793`): no link or address
// event comes with it, so only that deletion's notification can bring the route back.
TEST_F(DaemonTest, ARouteDeletedFromOurTablesBySomeoneElseIsRestored) {
  FakeKernel k;
  MobileHost(k);
  k.echo_route_changes = true;
  Make(false, true, Interfaces(k, {"wlan0", "eth1"}));
  ASSERT_TRUE(daemon_->Start().ok());
  const auto& c = daemon_->counters();
  Pump();
  const uint64_t syncs = c.Get(DaemonCounter::kInterfaceSyncs);
  const auto ours = std::find_if(k.routes.begin(), k.routes.end(),
                                 [](const rtnl::Route& r) { return r.table == 19793; });
  ASSERT_NE(ours, k.routes.end());
  const rtnl::Route gone = *ours;
  k.routes.erase(ours);
  clock_.now += 1s;
  k.Notify(rtnl::BuildRouteRequest(rtnl::Op::kDel, gone, 0));
  Pump();
  EXPECT_EQ(c.Get(DaemonCounter::kInterfaceSyncs), syncs + 1);
  EXPECT_NE(std::find(k.routes.begin(), k.routes.end(), gone), k.routes.end());
  daemon_.reset();
}

TEST_F(DaemonTest, MissingInterfaceFailsStartAndRemovesTheIptablesRules) {
  FakeKernel k;
  MobileHost(k);
  Make(false, true, Interfaces(k, {"wlan0", "wwan0"}));
  auto r = daemon_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "interfaces: interface wwan0 does not exist (--interfaces)");
  EXPECT_EQ(log_, (Log{"queue open", "stale", "install", "remove", "queue close"}));
  EXPECT_FALSE(fs::exists(config_.control.path));
  EXPECT_EQ(OurRules(k), 0u);
}

// The mptcp engine's commands through the registry. The engine's control API refuses every
// request until its subflow machinery lands (mptcp/control.cc); the plumbing and the argument
// checks are what is tested here.
class MptcpCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = MakeMptcpEngine({});
    ASSERT_TRUE(e.ok());
    engine_ = std::move(e.value());
    context_.now = [this] { return now_; };
    context_.emit = [this](packet::Actions& a) {
      emitted_ += a.forged.size();
      ++emits_;
      a.Clear();
    };
    RegisterMptcpCommands(*engine_, registry_, context_);
    // What the daemon hands over at start: two usable interfaces and one that is down.
    context_.set_interfaces({{"wlan0", 2, {Ip("198.18.1.2")}},
                             {"eth1", 3, {Ip("198.18.2.2"), Ip("2001:db8:2::2")}},
                             {"usb0", 4, {}}});
  }
  cli::Response Run(const std::string& cmd, nlohmann::json args = nlohmann::json::object()) {
    return registry_.Dispatch({cmd, std::move(args)});
  }
  std::unique_ptr<packet::Engine> engine_;
  CommandRegistry registry_;
  EngineContext context_;
  packet::Time now_ = packet::Time{} + 1h;
  size_t emitted_ = 0;
  int emits_ = 0;
};

TEST_F(MptcpCommandsTest, RegistersItsCommandsAndTheInterfaceHook) {
  std::set<std::string> names;
  for (const auto& [n, h] : registry_.List()) names.insert(n);
  for (const char* want :
       {"conn show", "handover", "handover status", "subflow add", "subflow del"}) {
    EXPECT_TRUE(names.count(want)) << want;
  }
  ASSERT_TRUE(context_.set_interfaces);
  context_.set_interfaces({{"eth1", 3, {Ip("198.18.2.2")}}});
  auto r = Run("conn show");
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.data["connections"].is_array());
}

TEST_F(MptcpCommandsTest, HandoverReachesTheEngineAndEmits) {
  auto r = Run("handover", {{"from", "wlan0"}, {"to", "eth1"}, {"break", true}, {"conn", "1a2b"}});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "handover: no established connection with that token");  // the engine's answer
  EXPECT_EQ(emits_, 1);  // whatever it forged would have been sent
}

TEST_F(MptcpCommandsTest, HandoverArgumentsAreChecked) {
  EXPECT_EQ(Run("handover", {{"to", "eth1"}}).error, "missing or empty argument 'from'");
  EXPECT_EQ(Run("handover", {{"from", "wlan0"}, {"to", 3}}).error,
            "missing or empty argument 'to'");
  EXPECT_EQ(Run("handover", {{"from", "eth1"}, {"to", "eth1"}}).error,
            "handover: from and to are the same interface");
  EXPECT_EQ(Run("handover", {{"from", "a"}, {"to", "b"}, {"break", "maybe"}}).error,
            "argument 'break' must be true or false");
  EXPECT_NE(Run("handover", {{"from", "a"}, {"to", "b"}, {"conn", "xyz"}})
                .error.find("not a connection token"),
            std::string::npos);
  EXPECT_NE(Run("handover", {{"from", "a"}, {"to", "b"}, {"conn", "123456789"}})
                .error.find("not a connection token"),
            std::string::npos);
  EXPECT_EQ(emits_, 0);  // refused before reaching the engine
}

TEST_F(MptcpCommandsTest, TargetInterfaceMustBeManagedAndUsable) {
  EXPECT_EQ(
      Run("handover", {{"from", "wlan0"}, {"to", "usb0"}}).error,
      "handover: interface usb0 has no usable address (down, no carrier or no global address)");
  EXPECT_EQ(Run("handover", {{"from", "wlan0"}, {"to", "wwan0"}}).error,
            "handover: wwan0 is not a managed interface (mproxyd --interfaces)");
  EXPECT_EQ(Run("subflow add", {{"conn", "ab"}, {"ifname", "usb0"}}).error,
            "subflow add: interface usb0 has no usable address (down, no carrier or no global "
            "address)");
  EXPECT_EQ(emits_, 0);
  // Leaving a down interface is what break-before-make is for; closing a subflow there too.
  // (No connection here: the engine reports the handover done for none.)
  EXPECT_TRUE(Run("handover", {{"from", "usb0"}, {"to", "eth1"}, {"break", true}}).ok);
  EXPECT_EQ(Run("subflow del", {{"conn", "ab"}, {"ifname", "usb0"}}).error,
            "subflow del: no connection with that token");
  // An interface that disappeared.
  context_.set_interfaces({{"eth1", 0, {}}});
  EXPECT_EQ(Run("handover", {{"from", "wlan0"}, {"to", "eth1"}}).error,
            "handover: interface eth1 is gone");
}

TEST(MptcpCommandsNoInterfaces, HandoverNeedsManagedInterfaces) {
  auto e = MakeMptcpEngine({});
  ASSERT_TRUE(e.ok());
  CommandRegistry registry;
  EngineContext context;
  context.now = [] { return packet::Time{}; };
  context.emit = [](packet::Actions& a) { a.Clear(); };
  RegisterMptcpCommands(*e.value(), registry, context);  // the daemon never calls set_interfaces
  EXPECT_EQ(registry.Dispatch({"handover", {{"from", "wlan0"}, {"to", "eth1"}}}).error,
            "handover: no managed interfaces (start mproxyd with --interfaces)");
}

TEST_F(MptcpCommandsTest, HandoverStatusOfAnUnknownId) {
  EXPECT_EQ(Run("handover status", {{"id", 4}}).error, "no handover with id 4");
  EXPECT_EQ(Run("handover status", {{"id", "4"}}).error, "no handover with id 4");
  EXPECT_EQ(Run("handover status", {{"id", "x"}}).error, "missing or invalid argument 'id'");
  EXPECT_EQ(Run("handover status", {{"id", -1}}).error, "missing or invalid argument 'id'");
  EXPECT_EQ(Run("handover status").error, "missing or invalid argument 'id'");
}

TEST_F(MptcpCommandsTest, SubflowCommands) {
  auto add = Run("subflow add", {{"conn", "0x1a2b3c4d"}, {"ifname", "eth1"}, {"backup", true}});
  EXPECT_FALSE(add.ok);
  EXPECT_EQ(add.error, "subflow add: no connection with that token");
  auto del = Run("subflow del", {{"conn", "1a2b3c4d"}, {"ifname", "eth1"}});
  EXPECT_EQ(del.error, "subflow del: no connection with that token");
  EXPECT_EQ(emits_, 2);
  EXPECT_EQ(Run("subflow add", {{"ifname", "eth1"}}).error, "missing or empty argument 'conn'");
  EXPECT_EQ(Run("subflow add", {{"conn", "ab"}}).error, "missing or empty argument 'ifname'");
}

TEST(MptcpCommandJson, TokenParsing) {
  EXPECT_EQ(ParseToken("1a2b3c4d"), 0x1a2b3c4du);
  EXPECT_EQ(ParseToken("0x1A2B3C4D"), 0x1a2b3c4du);
  EXPECT_EQ(ParseToken("7"), 7u);
  EXPECT_FALSE(ParseToken(""));
  EXPECT_FALSE(ParseToken("0x"));
  EXPECT_FALSE(ParseToken("123456789"));
  EXPECT_FALSE(ParseToken("12g4"));
}

TEST(MptcpCommandJson, SubflowAndHandoverStatus) {
  mptcp::SubflowInfo s;
  s.local_id = 1;
  s.remote_id = 0;
  s.tuple = {Ip("198.18.2.2"), Ip("198.18.3.2"), 40001, 5201};
  s.ifname = "eth1";
  s.state = mptcp::SubflowState::kEstablished;
  s.active = true;
  s.backup_local = true;
  s.bytes_tx = 10;
  s.bytes_rx = 20;
  EXPECT_EQ(SubflowJson(s), (nlohmann::json{{"interface", "eth1"},
                                            {"local", "198.18.2.2:40001"},
                                            {"remote", "198.18.3.2:5201"},
                                            {"state", "established"},
                                            {"local_id", 1},
                                            {"remote_id", 0},
                                            {"initial", false},
                                            {"active", true},
                                            {"backup", true},
                                            {"backup_remote", false},
                                            {"bytes_tx", 10},
                                            {"bytes_rx", 20}}));
  mptcp::HandoverStatus h;
  h.state = mptcp::HandoverState::kInProgress;
  h.connections = 3;
  h.moved = 1;
  h.started = packet::Time{} + 1s;
  auto j = HandoverStatusJson(h, packet::Time{} + 1250ms);
  EXPECT_EQ(j["state"], "in-progress");
  EXPECT_EQ(j["elapsed_ms"], 250);
  EXPECT_TRUE(j["error"].is_null());
  h.state = mptcp::HandoverState::kFailed;
  h.finished = packet::Time{} + 1100ms;
  h.error = "join refused";
  j = HandoverStatusJson(h, packet::Time{} + 9s);
  EXPECT_EQ(j["elapsed_ms"], 100);  // frozen at the end
  EXPECT_EQ(j["error"], "join refused");
  EXPECT_EQ(j["failed"], 0);
}

}  // namespace
}  // namespace mproxy::proxy
