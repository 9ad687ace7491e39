// Control server + client over a socket in a temporary directory, without threads: the client's
// writes are small enough to sit in the socket buffer, and the server's handlers run when the
// test pumps the event loop.
#include "proxy/control_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "cli/control_client.h"
#include "cli/control_protocol.h"

namespace mproxy::proxy {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mproxy-ctl-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.path = dir_ + "/sub/dir/ctl.sock";
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop.value());
    registry_.Register("echo", "returns its args",
                       [](const nlohmann::json& args) { return cli::Response::Ok(args); });
    registry_.Register("fail", "always fails",
                       [](const nlohmann::json&) { return cli::Response::Fail("nope"); });
    registry_.Register("throw", "a buggy handler", [](const nlohmann::json& args) {
      // A json type error, as a handler bug would raise it.
      return cli::Response::Ok({{"n", args.at("missing").get<int>()}});
    });
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  void OpenServer() {
    auto s = ControlServer::Open(options_, registry_, *loop_);
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(s.value());
  }
  void Pump(int rounds = 5) {
    for (int i = 0; i < rounds; ++i) ASSERT_TRUE(loop_->RunOnce(10).ok());
  }
  cli::ControlClient Connect() {
    auto c = cli::ControlClient::Connect(options_.path);
    EXPECT_TRUE(c.ok()) << c.error().message;
    return std::move(c.value());
  }
  Result<cli::Response> Call(cli::ControlClient& c, const cli::Request& req) {
    if (auto r = c.Send(req, 1s); !r) return r.error();
    Pump();
    return c.Receive(1s);
  }
  // Sends raw bytes (for malformed input) and returns the next response.
  Result<cli::Response> CallRaw(cli::ControlClient& c, const std::string& bytes) {
    EXPECT_EQ(send(c.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    Pump();
    return c.Receive(1s);
  }

  std::string dir_;
  ControlServerOptions options_;
  CommandRegistry registry_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, CreatesParentsAndSocketWithRootOnlyMode) {
  OpenServer();
  struct stat st {};
  ASSERT_EQ(stat(options_.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_ + "/sub/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(ControlServerTest, ConfigurableMode) {
  options_.mode = 0660;
  OpenServer();
  struct stat st {};
  ASSERT_EQ(stat(options_.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(ControlServerTest, RoundTrip) {
  OpenServer();
  auto c = Connect();
  auto r = Call(c, {"echo", {{"x", 1}, {"s", "hi"}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->data["x"], 1);
  EXPECT_EQ(r->data["s"], "hi");
  EXPECT_EQ(server_->counters().Get(ControlCounter::kAccepted), 1u);
  EXPECT_EQ(server_->counters().Get(ControlCounter::kRequests), 1u);
}

TEST_F(ControlServerTest, ErrorsAreAnsweredAndTheConnectionStaysUsable) {
  OpenServer();
  auto c = Connect();
  auto unknown = Call(c, {"nosuch", {}});
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->ok);
  EXPECT_NE(unknown->error.find("unknown command 'nosuch'"), std::string::npos);

  auto fail = Call(c, {"fail", {}});
  ASSERT_TRUE(fail.ok());
  EXPECT_FALSE(fail->ok);
  EXPECT_EQ(fail->error, "nope");

  auto thrown = Call(c, {"throw", {}});
  ASSERT_TRUE(thrown.ok());
  EXPECT_FALSE(thrown->ok);
  EXPECT_NE(thrown->error.find("internal error"), std::string::npos);

  for (const char* bad : {"not json\n", "[1,2]\n", "{\"v\":1}\n", "{\"v\":2,\"command\":\"x\"}\n",
                          "{\"v\":1,\"command\":\"echo\",\"args\":[]}\n", "\xff\xfe\n"}) {
    auto r = CallRaw(c, bad);
    ASSERT_TRUE(r.ok()) << bad;
    EXPECT_FALSE(r->ok) << bad;
    EXPECT_NE(r->error.find("malformed request"), std::string::npos) << r->error;
  }
  EXPECT_EQ(server_->counters().Get(ControlCounter::kMalformed), 6u);

  auto ok = Call(c, {"echo", {{"still", true}}});
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(server_->clients(), 1u);
}

TEST_F(ControlServerTest, PipelinedRequestsAreAnsweredInOrder) {
  OpenServer();
  auto c = Connect();
  std::string batch;
  for (int i = 0; i < 10; ++i) batch += cli::EncodeRequest({"echo", {{"i", i}}}).value();
  ASSERT_EQ(send(c.fd(), batch.data(), batch.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(batch.size()));
  Pump();
  for (int i = 0; i < 10; ++i) {
    auto r = c.Receive(1s);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->data["i"], i);
  }
}

TEST_F(ControlServerTest, RequestSplitAcrossWrites) {
  OpenServer();
  auto c = Connect();
  const std::string line = cli::EncodeRequest({"echo", {{"k", "v"}}}).value();
  ASSERT_EQ(send(c.fd(), line.data(), 5, MSG_NOSIGNAL), 5);
  Pump();
  ASSERT_EQ(send(c.fd(), line.data() + 5, line.size() - 5, MSG_NOSIGNAL),
            static_cast<ssize_t>(line.size() - 5));
  Pump();
  auto r = c.Receive(1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data["k"], "v");
}

TEST_F(ControlServerTest, OversizeRequestIsRefusedAndClosed) {
  options_.max_request_bytes = 1024;
  OpenServer();
  auto c = Connect();
  const std::string huge(4096, 'x');  // no newline: can never become a valid request
  auto r = CallRaw(c, huge);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->error, "request too large");
  Pump();
  EXPECT_EQ(server_->clients(), 0u);
  auto eof = c.Receive(200ms);
  EXPECT_FALSE(eof.ok());
  EXPECT_EQ(eof.error().code, ECONNRESET);
}

TEST_F(ControlServerTest, ClientThatHangsUpIsForgotten) {
  OpenServer();
  {
    auto c = Connect();
    Pump();
    EXPECT_EQ(server_->clients(), 1u);
  }
  Pump();
  EXPECT_EQ(server_->clients(), 0u);
}

TEST_F(ControlServerTest, AnswersBeforeClosingWhenClientShutsDownWriting) {
  OpenServer();
  auto c = Connect();
  ASSERT_TRUE(c.Send({"echo", {{"a", 1}}}, 1s).ok());
  shutdown(c.fd(), SHUT_WR);
  Pump();
  auto r = c.Receive(1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data["a"], 1);
  Pump();
  EXPECT_EQ(server_->clients(), 0u);
}

TEST_F(ControlServerTest, TooManyClientsAreRefused) {
  options_.max_clients = 2;
  OpenServer();
  auto a = Connect();
  auto b = Connect();
  auto c = Connect();
  Pump();
  EXPECT_EQ(server_->clients(), 2u);
  EXPECT_EQ(server_->counters().Get(ControlCounter::kRefused), 1u);
  auto r = c.Receive(200ms);
  EXPECT_FALSE(r.ok());
}

TEST_F(ControlServerTest, StaleSocketIsReplaced) {
  ASSERT_TRUE(MakeDirs(dir_ + "/sub/dir", 0755).ok());
  {
    // A socket file whose owner is gone (a crashed daemon).
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, options_.path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  ASSERT_TRUE(fs::exists(options_.path));
  OpenServer();
  auto c = Connect();
  auto r = Call(c, {"echo", {}});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
}

TEST_F(ControlServerTest, RefusesWhenAnotherDaemonAnswers) {
  OpenServer();
  auto second = ControlServer::Open(options_, registry_, *loop_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EADDRINUSE);
  EXPECT_NE(second.error().message.find("already running"), std::string::npos);
  // The first server is untouched.
  auto c = Connect();
  auto r = Call(c, {"echo", {}});
  ASSERT_TRUE(r.ok());
}

TEST_F(ControlServerTest, RefusesToReplaceARegularFile) {
  ASSERT_TRUE(MakeDirs(dir_ + "/sub/dir", 0755).ok());
  std::ofstream(options_.path) << "precious";
  auto s = ControlServer::Open(options_, registry_, *loop_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not a socket"), std::string::npos);
  std::ifstream in(options_.path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ControlServerTest, DestructorRemovesTheSocketFile) {
  OpenServer();
  ASSERT_TRUE(fs::exists(options_.path));
  server_.reset();
  EXPECT_FALSE(fs::exists(options_.path));
}

TEST_F(ControlServerTest, PathTooLong) {
  options_.path = dir_ + "/" + std::string(200, 'a');
  auto s = ControlServer::Open(options_, registry_, *loop_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENAMETOOLONG);
}

TEST(ControlClient, NotRunningMessages) {
  auto missing = cli::ControlClient::Connect("/tmp/definitely-missing-mproxy/x.sock");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_EQ(missing.error().message,
            "mproxyd is not running (no socket at /tmp/definitely-missing-mproxy/x.sock)");
}

TEST(CommandRegistry, RegisterDispatchList) {
  CommandRegistry r;
  EXPECT_TRUE(r.Register("b cmd", "B", [](const nlohmann::json&) { return cli::Response::Ok(); }));
  EXPECT_TRUE(r.Register("a", "A", [](const nlohmann::json& args) {
    return cli::Response::Ok({{"is_object", args.is_object()}});
  }));
  EXPECT_FALSE(r.Register("a", "dup", [](const nlohmann::json&) { return cli::Response::Ok(); }));
  const auto list = r.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].first, "a");
  EXPECT_EQ(list[1].first, "b cmd");
  cli::Request req{"a", nullptr};  // null args reach the handler as an empty object
  EXPECT_EQ(r.Dispatch(req).data["is_object"], true);
}

}  // namespace
}  // namespace mproxy::proxy
