// The control protocol between mproxyctl and mproxyd: one JSON object per line over a Unix stream
// socket, request then response, in order.
//
//   request:  {"v":1,"command":"stats","args":{}}
//   response: {"v":1,"ok":true,"data":{...}}        or  {"v":1,"ok":false,"error":"..."}
//
// Commands are words joined by single spaces ("status", "conn show", "subflow add"); `args` is an
// object whose keys the command defines. The version field lets a newer mproxyctl detect an older
// daemon (and the reverse) instead of misreading it. Decoding never throws: the daemon feeds it
// whatever a client sent (nlohmann's non-throwing parse; type checks before every access).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "packet/result.h"

namespace mproxy::cli {

inline constexpr int kProtocolVersion = 1;
// A request is a command name and a few arguments; anything larger is refused by the daemon
// before parsing.
inline constexpr size_t kMaxRequestBytes = 64 * 1024;
// Responses carry tables (stats, later connection lists); the client refuses anything larger.
inline constexpr size_t kMaxResponseBytes = 16 * 1024 * 1024;
inline constexpr size_t kMaxCommandLength = 64;

struct Request {
  std::string command;
  nlohmann::json args = nlohmann::json::object();
};

struct Response {
  bool ok = true;
  std::string error;                               // set when !ok
  nlohmann::json data = nlohmann::json::object();  // set when ok

  static Response Ok(nlohmann::json data = nlohmann::json::object());
  static Response Fail(std::string error);
};

// Encoders return one line including the terminating '\n'. Invalid UTF-8 in strings is replaced
// (U+FFFD), never an error, so a hostile command name echoed in an error message cannot break the
// response.
Result<std::string> EncodeRequest(const Request& request);
Result<std::string> EncodeResponse(const Response& response);
// Decoders take one line with or without its '\n'. Errors (code EPROTO) say what was wrong.
Result<Request> DecodeRequest(std::string_view line);
Result<Response> DecodeResponse(std::string_view line);

}  // namespace mproxy::cli
