#include "cli/output.h"

#include <string>

namespace mproxy::cli {
namespace {

using nlohmann::json;

std::string Scalar(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string s;
    for (const auto& e : v) {
      if (!s.empty()) s += ',';
      s += Scalar(e);
    }
    return s.empty() ? "-" : s;
  }
  if (v.is_object()) {
    // An object inside a one-line element: "k v k v".
    std::string s;
    for (const auto& [k, e] : v.items()) {
      if (!s.empty()) s += ' ';
      s += k + ' ' + Scalar(e);
    }
    return s;
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool IsSection(const json& v) {
  if (v.is_object()) return true;
  if (!v.is_array() || v.empty()) return false;
  for (const auto& e : v) {
    if (!e.is_object()) return false;
  }
  return true;
}

// One element of an array of objects: its members on one line ("k v k v"); members that are
// themselves arrays of objects (a connection's subflows) follow as lines indented below it, so
// the line stays readable instead of nesting everything into it.
void PrintElement(std::ostream& out, const json& e, int indent) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  json flat = json::object();
  for (const auto& [k, v] : e.items()) {
    if (!(v.is_array() && IsSection(v))) flat[k] = v;
  }
  out << pad << Scalar(flat) << '\n';
  for (const auto& [k, v] : e.items()) {
    if (!(v.is_array() && IsSection(v))) continue;
    for (const auto& sub : v) out << pad << "  " << k << ": " << Scalar(sub) << '\n';
  }
}

void PrintObject(std::ostream& out, const json& obj, int indent) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  size_t width = 0;
  for (const auto& [k, v] : obj.items()) {
    if (!IsSection(v)) width = std::max(width, k.size());
  }
  for (const auto& [k, v] : obj.items()) {
    if (v.is_object()) {
      out << pad << k << ":\n";
      PrintObject(out, v, indent + 2);
    } else if (IsSection(v)) {
      out << pad << k << ":\n";
      for (const auto& e : v) PrintElement(out, e, indent + 2);
    } else {
      out << pad << k << std::string(width - k.size() + 2, ' ') << Scalar(v) << '\n';
    }
  }
}

}  // namespace

void Print(std::ostream& out, const nlohmann::json& data, const OutputOptions& options) {
  if (options.json) {
    out << data.dump(options.pretty ? 2 : -1, ' ', false, json::error_handler_t::replace) << '\n';
    return;
  }
  if (data.is_object()) {
    PrintObject(out, data, 0);
  } else if (IsSection(data)) {
    for (const auto& e : data) PrintElement(out, e, 0);
  } else {
    out << Scalar(data) << '\n';
  }
}

}  // namespace mproxy::cli
