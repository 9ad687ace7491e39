#include "cli/control_protocol.h"

#include <cerrno>
#include <exception>
#include <utility>

namespace mproxy::cli {
namespace {

using nlohmann::json;

Error ProtoError(std::string msg) { return MakeError(std::move(msg), EPROTO); }

Result<std::string> Dump(const json& j) {
  // dump() with error_handler_t::replace does not throw on bad UTF-8; the catch is the control
  // boundary's last line of defence (e.g. allocation failure), never a data-path path.
  try {
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    s += '\n';
    return s;
  } catch (const std::exception& e) {
    return ProtoError(std::string("encoding JSON: ") + e.what());
  }
}

std::string_view StripNewline(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  return line;
}

// Parses an object line and checks the version field.
Result<json> ParseObject(std::string_view line) {
  line = StripNewline(line);
  if (line.empty()) return ProtoError("empty message");
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return ProtoError("malformed JSON");
  if (!j.is_object()) return ProtoError("message is not a JSON object");
  const auto v = j.find("v");
  if (v == j.end()) return ProtoError("missing protocol version \"v\"");
  if (!v->is_number_integer()) return ProtoError("protocol version \"v\" is not an integer");
  if (v->get<int64_t>() != kProtocolVersion) {
    return ProtoError("protocol version " + std::to_string(v->get<int64_t>()) +
                      " not supported (this side speaks " + std::to_string(kProtocolVersion) + ")");
  }
  return j;
}

}  // namespace

Response Response::Ok(nlohmann::json data) {
  Response r;
  r.ok = true;
  r.data = std::move(data);
  return r;
}

Response Response::Fail(std::string error) {
  Response r;
  r.ok = false;
  r.error = std::move(error);
  r.data = nullptr;
  return r;
}

Result<std::string> EncodeRequest(const Request& request) {
  json j = json::object();
  j["v"] = kProtocolVersion;
  j["command"] = request.command;
  j["args"] = request.args.is_null() ? json::object() : request.args;
  return Dump(j);
}

Result<std::string> EncodeResponse(const Response& response) {
  json j = json::object();
  j["v"] = kProtocolVersion;
  j["ok"] = response.ok;
  if (response.ok) {
    j["data"] = response.data;
  } else {
    j["error"] = response.error;
  }
  return Dump(j);
}

Result<Request> DecodeRequest(std::string_view line) {
  auto parsed = ParseObject(line);
  if (!parsed) return parsed.error();
  json& j = parsed.value();
  Request r;
  const auto cmd = j.find("command");
  if (cmd == j.end() || !cmd->is_string()) return ProtoError("missing string \"command\"");
  r.command = cmd->get<std::string>();
  if (r.command.empty()) return ProtoError("empty command");
  if (r.command.size() > kMaxCommandLength) return ProtoError("command name too long");
  const auto args = j.find("args");
  if (args != j.end() && !args->is_null()) {
    if (!args->is_object()) return ProtoError("\"args\" is not an object");
    r.args = std::move(*args);
  }
  return r;
}

Result<Response> DecodeResponse(std::string_view line) {
  auto parsed = ParseObject(line);
  if (!parsed) return parsed.error();
  json& j = parsed.value();
  Response r;
  const auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return ProtoError("missing boolean \"ok\"");
  r.ok = ok->get<bool>();
  if (r.ok) {
    const auto data = j.find("data");
    r.data = data == j.end() ? json::object() : std::move(*data);
  } else {
    const auto err = j.find("error");
    if (err == j.end() || !err->is_string()) return ProtoError("error response without \"error\"");
    r.error = err->get<std::string>();
    r.data = nullptr;
  }
  return r;
}

}  // namespace mproxy::cli
