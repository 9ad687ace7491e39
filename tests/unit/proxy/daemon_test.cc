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
#include <string>
#include <vector>

#include "cli/control_client.h"

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

  void Make(bool fail_install = false, bool with_rules = true) {
    DaemonDeps deps;
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

}  // namespace
}  // namespace mproxy::proxy
