// Fuzzes the control protocol codec (cli/control_protocol.h): the daemon decodes whatever a local
// client sends, mproxyctl whatever a daemon answers. Invariants (a violation traps): decoding never
// crashes or throws; a decoded request or response encodes and decodes back to an equal value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cli/control_protocol.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  using namespace mproxy::cli;  // NOLINT(google-build-using-namespace): fuzz harness
  if (auto req = DecodeRequest(line)) {
    auto text = EncodeRequest(*req);
    Check(text.ok());
    auto back = DecodeRequest(*text);
    Check(back && back->command == req->command && back->args == req->args);
  }
  if (auto resp = DecodeResponse(line)) {
    auto text = EncodeResponse(*resp);
    Check(text.ok());
    auto back = DecodeResponse(*text);
    Check(back && back->ok == resp->ok && back->error == resp->error && back->data == resp->data);
  }
  return 0;
}
