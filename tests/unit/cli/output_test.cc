#include "cli/output.h"

#include <gtest/gtest.h>

#include <sstream>

namespace mproxy::cli {
namespace {

std::string Text(const nlohmann::json& j) {
  std::ostringstream s;
  Print(s, j, {});
  return s.str();
}

TEST(Output, FlatObjectIsAlignedKeyValueLines) {
  EXPECT_EQ(Text({{"engine", "passthrough"}, {"pid", 12}, {"rules", "installed"}}),
            "engine  passthrough\n"
            "pid     12\n"
            "rules   installed\n");
}

TEST(Output, NestedObjectsAreIndentedSections) {
  nlohmann::json j = {{"nfqueue", {{"NfqReceived", 10}, {"NfqVerdictAccept", 9}}},
                      {"kernel_queue", nullptr}};
  EXPECT_EQ(Text(j),
            "kernel_queue  -\n"
            "nfqueue:\n"
            "  NfqReceived       10\n"
            "  NfqVerdictAccept  9\n");
}

TEST(Output, ArraysOfScalarsAndOfObjects) {
  nlohmann::json j = {{"ports", {5201, 8080}},
                      {"conns", {{{"id", 1}, {"state", "est"}}, {{"id", 2}, {"state", "fin"}}}}};
  EXPECT_EQ(Text(j),
            "conns:\n"
            "  id 1 state est\n"
            "  id 2 state fin\n"
            "ports  5201,8080\n");
  EXPECT_EQ(Text({{"ports", nlohmann::json::array()}}), "ports  -\n");
}

TEST(Output, JsonIsTheSameValue) {
  nlohmann::json j = {{"a", 1}, {"b", {{"c", "d"}}}};
  std::ostringstream compact, pretty;
  Print(compact, j, {true, false});
  Print(pretty, j, {true, true});
  EXPECT_EQ(compact.str(), "{\"a\":1,\"b\":{\"c\":\"d\"}}\n");
  EXPECT_EQ(nlohmann::json::parse(pretty.str()), j);
}

TEST(Output, Scalars) {
  EXPECT_EQ(Text(42), "42\n");
  EXPECT_EQ(Text("x"), "x\n");
  EXPECT_EQ(Text(nullptr), "-\n");
}

}  // namespace
}  // namespace mproxy::cli

namespace mproxy::cli {
namespace {

TEST(Output, NestedArraysOfObjectsGoBelowTheirElement) {
  nlohmann::json j = {{"connections",
                       {{{"local", "198.18.1.2:4000"},
                         {"state", "established"},
                         {"subflows",
                          {{{"interface", "wlan0"}, {"active", false}},
                           {{"interface", "eth1"}, {"active", true}}}}}}}};
  std::ostringstream s;
  Print(s, j, {});
  EXPECT_EQ(s.str(),
            "connections:\n"
            "  local 198.18.1.2:4000 state established\n"
            "    subflows: active false interface wlan0\n"
            "    subflows: active true interface eth1\n");
}

}  // namespace
}  // namespace mproxy::cli
