#include "cli/control_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace mproxy::cli {
namespace {

TEST(ControlProtocol, RequestRoundTrip) {
  Request in{"conn show", {{"iface", "wlan0"}, {"n", 3}}};
  auto line = EncodeRequest(in);
  ASSERT_TRUE(line.ok());
  EXPECT_EQ(line->back(), '\n');
  EXPECT_EQ(line->find('\n'), line->size() - 1);  // exactly one line
  auto out = DecodeRequest(*line);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->command, "conn show");
  EXPECT_EQ(out->args, in.args);
}

TEST(ControlProtocol, WireFormatCarriesTheVersion) {
  auto line = EncodeRequest({"status", {}});
  ASSERT_TRUE(line.ok());
  EXPECT_EQ(*line, "{\"args\":{},\"command\":\"status\",\"v\":1}\n");
}

TEST(ControlProtocol, ResponseRoundTrip) {
  auto ok = EncodeResponse(Response::Ok({{"pid", 12}}));
  ASSERT_TRUE(ok.ok());
  auto r = DecodeResponse(*ok);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->data["pid"], 12);

  auto err = EncodeResponse(Response::Fail("queue not bound"));
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(*err, "{\"error\":\"queue not bound\",\"ok\":false,\"v\":1}\n");
  auto e = DecodeResponse(*err);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->ok);
  EXPECT_EQ(e->error, "queue not bound");
}

TEST(ControlProtocol, MissingArgsIsAnEmptyObject) {
  auto r = DecodeRequest("{\"v\":1,\"command\":\"stats\"}");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->args.is_object());
  EXPECT_TRUE(r->args.empty());
  auto n = DecodeRequest("{\"v\":1,\"command\":\"stats\",\"args\":null}\r\n");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->args.is_object());
}

TEST(ControlProtocol, MalformedRequests) {
  const char* cases[] = {
      "",
      "\n",
      "not json",
      "{",
      "[]",
      "42",
      "\"status\"",
      "{}",
      "{\"command\":\"status\"}",              // no version
      "{\"v\":\"1\",\"command\":\"status\"}",  // version not an integer
      "{\"v\":1.5,\"command\":\"status\"}",
      "{\"v\":2,\"command\":\"status\"}",  // future version
      "{\"v\":-1,\"command\":\"status\"}",
      "{\"v\":1}",  // no command
      "{\"v\":1,\"command\":7}",
      "{\"v\":1,\"command\":\"\"}",
      "{\"v\":1,\"command\":\"status\",\"args\":[1]}",  // args not an object
      "{\"v\":1,\"command\":\"status\",\"args\":\"x\"}",
      "{\"v\":1,\"command\":\"status\"} trailing",
      "\xff\xfe\xfd",
      "{\"v\":1,\"command\":\"\xff\"",
  };
  for (const char* c : cases) {
    auto r = DecodeRequest(c);
    ASSERT_FALSE(r.ok()) << c;
    EXPECT_EQ(r.error().code, EPROTO) << c;
    EXPECT_FALSE(r.error().message.empty());
  }
  auto future = DecodeRequest("{\"v\":2,\"command\":\"status\"}");
  EXPECT_NE(future.error().message.find("version 2 not supported"), std::string::npos);
  const std::string long_cmd =
      "{\"v\":1,\"command\":\"" + std::string(kMaxCommandLength + 1, 'a') + "\"}";
  EXPECT_FALSE(DecodeRequest(long_cmd).ok());
}

TEST(ControlProtocol, MalformedResponses) {
  for (const char* c : {"{\"v\":1}", "{\"v\":1,\"ok\":\"yes\"}", "{\"v\":1,\"ok\":false}",
                        "{\"v\":1,\"ok\":false,\"error\":3}", "{\"ok\":true}", "null"}) {
    EXPECT_FALSE(DecodeResponse(c).ok()) << c;
  }
  auto no_data = DecodeResponse("{\"v\":1,\"ok\":true}");
  ASSERT_TRUE(no_data.ok());
  EXPECT_TRUE(no_data->data.is_object());
}

TEST(ControlProtocol, InvalidUtf8IsReplacedNotThrown) {
  // An error message echoing a hostile command name must still encode.
  auto line = EncodeResponse(Response::Fail("unknown command '\xff\xfe'"));
  ASSERT_TRUE(line.ok());
  auto back = DecodeResponse(*line);
  ASSERT_TRUE(back.ok());
  EXPECT_NE(back->error.find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD
}

TEST(ControlProtocol, DeepNestingDoesNotCrash) {
  std::string deep = "{\"v\":1,\"command\":\"x\",\"args\":{\"a\":";
  for (int i = 0; i < 10000; ++i) deep += '[';
  for (int i = 0; i < 10000; ++i) deep += ']';
  deep += "}}";
  auto r = DecodeRequest(deep);
  EXPECT_TRUE(r.ok());
}

TEST(ControlProtocol, EveryPrefixOfAValidLineIsHandled) {
  const std::string line = EncodeRequest({"handover", {{"from", "wlan0"}, {"to", "eth1"}}}).value();
  for (size_t n = 0; n < line.size() - 1; ++n) {
    EXPECT_FALSE(DecodeRequest(std::string_view(line).substr(0, n)).ok()) << n;
  }
  EXPECT_TRUE(DecodeRequest(std::string_view(line).substr(0, line.size() - 1)).ok());
  EXPECT_TRUE(DecodeRequest(line).ok());
}

}  // namespace
}  // namespace mproxy::cli
