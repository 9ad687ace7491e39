// One print path for text and JSON (iproute2's print_*(PRINT_ANY, ...) idea): a command's answer
// is a JSON value; -j prints it as JSON, otherwise the same value is rendered as aligned text.
// Commands therefore never grow two formatters that drift apart.
//
// Text rendering of an object:  scalar members as "key  value" lines (keys padded to one column),
// nested objects as an indented "key:" section, arrays of scalars comma separated, arrays of
// objects one line per element ("k v k v", like `ip -o`) with an element's own arrays of objects
// (a connection's subflows) as "key: k v k v" lines indented below it, null as "-".
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>

namespace mproxy::cli {

struct OutputOptions {
  bool json = false;
  bool pretty = false;  // with json: indented
};

void Print(std::ostream& out, const nlohmann::json& data, const OutputOptions& options);

}  // namespace mproxy::cli
