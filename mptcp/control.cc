// Control-plane entry points of the engine (handover, subflows). Placeholders until the subflow
// machinery lands (issue 4): every request is refused with a clear error.
#include "mptcp/engine.h"

namespace mproxy::mptcp {

std::string_view Name(SubflowState s) {
  switch (s) {
    case SubflowState::kSynSent: return "syn-sent";
    case SubflowState::kPreEstablished: return "pre-established";
    case SubflowState::kSynReceived: return "syn-received";
    case SubflowState::kEstablished: return "established";
    case SubflowState::kClosing: return "closing";
    case SubflowState::kClosed: return "closed";
  }
  return "?";
}

std::string_view Name(HandoverState s) {
  switch (s) {
    case HandoverState::kInProgress: return "in-progress";
    case HandoverState::kDone: return "done";
    case HandoverState::kFailed: return "failed";
  }
  return "?";
}

void Engine::ForEachSubflow(const Connection& c,
                            const std::function<void(const SubflowInfo&)>& visit) const {
  SubflowInfo initial;
  initial.tuple = c.tuple;
  initial.initial = true;
  initial.active = true;
  initial.state = c.state == ConnState::kClosed ? SubflowState::kClosed : SubflowState::kEstablished;
  initial.bytes_tx = c.bytes_tx;
  initial.bytes_rx = c.bytes_rx;
  visit(initial);
}

void Engine::SetInterfaces(std::vector<LocalInterface> interfaces) {
  interfaces_ = std::move(interfaces);
}

Result<uint64_t> Engine::StartHandover(packet::Time, const HandoverRequest&, packet::Actions&) {
  return MakeError("handover: subflows are not implemented yet");
}

std::optional<HandoverStatus> Engine::HandoverStatusOf(uint64_t) const { return std::nullopt; }

Result<void> Engine::AddSubflow(packet::Time, uint32_t, std::string_view, bool, packet::Actions&) {
  return MakeError("subflow add: subflows are not implemented yet");
}

Result<void> Engine::RemoveSubflow(packet::Time, uint32_t, std::string_view, packet::Actions&) {
  return MakeError("subflow del: subflows are not implemented yet");
}

}  // namespace mproxy::mptcp
