// Announcing our own addresses to the peer (RFC 8684 §3.4.1 ADD_ADDR, §3.4.2 REMOVE_ADDR;
// interop §1.5; mptcp/DESIGN.md "Announcing our addresses"). Sans-I/O like the rest of the engine:
// the ADD_ADDRs are forged pure ACKs in `actions`, their retransmission runs on the connection's
// timer.
#include <algorithm>
#include <optional>

#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "mptcp/stream_offsets.h"

namespace mproxy::mptcp {

using packet::Time;
namespace tcp_flags = packet::tcp_flags;

namespace {

// Bytes the timestamps option takes with its two NOPs (RFC 7323), and the DSS DATA_ACK forms.
constexpr size_t kTsRoom = 12;
constexpr size_t kDssAck64 = 12, kDssAck32 = 8;
constexpr size_t kOptionSpace = 40;

// A link-local address is meaningless to the peer.
bool Announceable(const packet::IpAddress& a) { return !a.is_link_local_v6(); }

}  // namespace

std::string_view Name(AnnounceMode m) {
  switch (m) {
    case AnnounceMode::kAuto:
      return "auto";
    case AnnounceMode::kAlways:
      return "always";
    case AnnounceMode::kNever:
      return "never";
  }
  return "?";
}

std::optional<AnnounceMode> ParseAnnounceMode(std::string_view s) {
  for (AnnounceMode m : {AnnounceMode::kAuto, AnnounceMode::kAlways, AnnounceMode::kNever}) {
    if (Name(m) == s) return m;
  }
  return std::nullopt;
}

bool Engine::WantsAnnounce(const Connection& c) const {
  switch (config_.announce) {
    case AnnounceMode::kAlways:
      return true;
    case AnnounceMode::kNever:
      return false;
    case AnnounceMode::kAuto:
      // The peer opened the connection: it is the one that joins (a native client with
      // add_addr_accepted). As the initiator we are the joiner (the mobile host), and a native
      // server accepting ADD_ADDR would open subflows beside ours.
      return c.role == Role::kPassive;
  }
  return false;
}

Subflow* Engine::SignalSubflow(Connection& c) {
  if (!c.multi) return nullptr;
  // Preferably one whose address is still ours (a REMOVE_ADDR is sent because one went).
  Subflow* any = nullptr;
  auto consider = [&](Subflow* sf) -> bool {
    if (sf == nullptr || !sf->usable()) return false;
    if (any == nullptr) any = sf;
    return InterfaceOf(sf->tuple.src) != nullptr;
  };
  if (consider(c.active)) return c.active;
  for (auto& sf : c.subflows) {
    if (consider(sf.get())) return sf.get();
  }
  return any;
}

void Engine::Announce(Time now, Connection& c, packet::Actions& actions) {
  c.announce_at.reset();
  c.announce_started = true;
  if (!c.announce || c.state != ConnState::kEstablished || !c.remote_key_known) return;
  // What to announce: every address of our interfaces in the connection's family except the
  // initial subflow's own (ID 0, which the peer knows; RFC 8684 §3.4.1).
  std::vector<packet::IpAddress> want;
  for (const auto& i : interfaces_) {
    for (const auto& a : i.addresses) {
      if (a.family() != c.tuple.src.family() || a == c.tuple.src || !Announceable(a)) continue;
      if (std::find(want.begin(), want.end(), a) == want.end()) want.push_back(a);
    }
  }
  // Gone: REMOVE_ADDR (RFC 8684 §3.4.2), so the peer stops joining it and closes subflows to it.
  RemoveAddr rm;
  for (auto it = c.announced.begin(); it != c.announced.end();) {
    if (std::find(want.begin(), want.end(), it->address) != want.end()) {
      ++it;
      continue;
    }
    if (rm.count == kMaxRemoveIds) {
      ++it;  // one option's worth at a time: the rest goes at the next change
      continue;
    }
    rm.ids[rm.count++] = it->id;
    it = c.announced.erase(it);
  }
  if (rm.count > 0) {
    const bool pending = std::any_of(rm.list().begin(), rm.list().end(), [&](uint8_t id) {
      return std::find(c.removed_ids.begin(), c.removed_ids.end(), id) == c.removed_ids.end();
    });
    if (SendRemoveAddr(c, SignalSubflow(c), rm, actions)) {
      counters_.Inc(Counter::kAnnounceRemoveTx);
    } else if (pending) {
      counters_.Inc(Counter::kAnnounceRemoveNoRoom);  // no subflow could carry it
    }
  }
  // New: ADD_ADDR with the ID our MP_JOINs and REMOVE_ADDRs use for the address (AddressId is
  // stable for the engine's lifetime), so a later REMOVE_ADDR or a passive join names the same.
  // First retransmission after max(add_addr_rto, 2 x handshake RTT): Linux echoes at once.
  const packet::Duration rto =
      std::max<packet::Duration>(config_.add_addr_rto, 2 * c.handshake_rtt);
  for (const auto& a : want) {
    if (std::any_of(c.announced.begin(), c.announced.end(),
                    [&](const Announcement& x) { return x.address == a; })) {
      continue;
    }
    Announcement ann;
    ann.id = AddressId(c, a);
    ann.address = a;
    // Announced again after a REMOVE_ADDR: the ID is live once more.
    std::erase(c.removed_ids, ann.id);
    ann.tries = 1;
    ann.due = now + rto;
    if (SendAddAddr(c, ann, actions)) counters_.Inc(Counter::kAddAddrTx);
    c.announced.push_back(ann);
    if (*ann.due < c.deadline) Schedule(c, *ann.due);
  }
}

bool Engine::SendAddAddr(Connection& c, const Announcement& a, packet::Actions& actions) {
  AddAddr add;
  add.address_id = a.id;
  add.address = a.address;
  // RFC 8684 §3.4.1, interop §1.5: HMAC(Key-sender || Key-receiver, ID || address || port (0:
  // none)), last 8 bytes; we are the sender.
  auto hmac = AddAddrHmac(c.local_key, c.remote_key, a.id, a.address.bytes(), 0);
  if (!hmac) {
    counters_.Inc(Counter::kForgeError);
    return false;
  }
  add.hmac = *hmac;
  const Option opt{add};
  const size_t len = EncodedLength(opt);  // 16 (IPv4) or 28 (IPv6)
  // On a pure ACK, like Linux (interop §1.5). A DSS DATA_ACK goes beside it when it fits
  // (64-bit, else 32-bit): an IPv6 ADD_ADDR next to timestamps fills the option space
  // (12 + 28 = 40), and then goes alone as Linux sends it; the peer counts a non-echo ADD_ADDR
  // as the ack that makes its MP_CAPABLE side fully established, like a DSS ack (Linux
  // check_fully_established()).
  Subflow* sf = SignalSubflow(c);
  if (!c.multi) {
    const size_t ts = c.last_ts ? kTsRoom : 0;
    auto pkt = Forge(c, InitialSndNxt(c), tcp_flags::kAck, &opt,
                     /*data_ack=*/ts + kDssAck32 + len <= kOptionSpace);
    if (!pkt) return false;
    actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
    return true;
  }
  if (sf == nullptr) {
    counters_.Inc(Counter::kAddAddrNoRoom);
    return false;
  }
  const size_t ts = sf->ts ? kTsRoom : 0;
  if (ts + kDssAck64 + len <= kOptionSpace) {
    return ForgeOn(c, *sf, tcp_flags::kAck, SndNxt(*sf), {add}, actions);
  }
  if (ts + kDssAck32 + len <= kOptionSpace) {
    Dss dss;
    dss.data_ack = DssDataAck{(c.remote_idsn + 1 + c.rx_dan) & 0xffffffffu, false};
    return ForgeOn(c, *sf, tcp_flags::kAck, SndNxt(*sf), {dss, add}, actions,
                   /*with_data_ack=*/false);
  }
  return ForgeOn(c, *sf, tcp_flags::kAck, SndNxt(*sf), {add}, actions, /*with_data_ack=*/false);
}

void Engine::AnnounceTimers(Time now, Connection& c, packet::Actions& actions) {
  if (c.announce_at && *c.announce_at <= now) Announce(now, c, actions);
  for (auto& a : c.announced) {
    if (!a.due || *a.due > now) continue;
    // Linux retransmits an un-echoed ADD_ADDR up to ADD_ADDR_RETRANS_MAX (3) times
    // (interop §1.5); after that the peer is taken not to want it.
    if (a.tries > config_.add_addr_retries) {
      counters_.Inc(Counter::kAddAddrGaveUp);
      a.due.reset();
      continue;
    }
    const packet::Duration rto =
        std::max<packet::Duration>(config_.add_addr_rto, 2 * c.handshake_rtt);
    a.due = now + rto * (1 << std::min(a.tries, 10));
    ++a.tries;
    if (SendAddAddr(c, a, actions)) counters_.Inc(Counter::kAddAddrRetx);
  }
}

void Engine::OnAddAddrEcho(Connection& c, const AddAddr& a) {
  counters_.Inc(Counter::kAddAddrEchoRx);
  // RFC 8684 §3.4.1: the echo repeats ID and address (and port) of what it confirms. One for
  // something we did not announce (or announced with another ID) changes nothing.
  for (auto& x : c.announced) {
    if (x.id == a.address_id && x.address == a.address && !a.port) {
      x.echoed = true;
      x.due.reset();
    }
  }
}

bool Engine::SendRemoveAddr(Connection& c, Subflow* sf, RemoveAddr rm, packet::Actions& actions) {
  // One REMOVE_ADDR per ID: a second one for an ID the peer already removed is at best ignored,
  // and Linux drops one that arrives while it still works on the previous (RmAddrDrop).
  RemoveAddr out;
  for (uint8_t id : rm.list()) {
    if (std::find(c.removed_ids.begin(), c.removed_ids.end(), id) != c.removed_ids.end()) continue;
    out.ids[out.count++] = id;
  }
  if (out.count == 0) return false;
  bool sent = false;
  if (sf != nullptr) {
    sent = ForgeOn(c, *sf, tcp_flags::kAck, SndNxt(*sf), {out}, actions);
  } else if (!c.multi) {
    const Option opt{out};
    if (auto pkt = Forge(c, InitialSndNxt(c), tcp_flags::kAck, &opt)) {
      actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
      sent = true;
    }
  }
  if (!sent) return false;
  constexpr size_t kKeptRemoved = 64;  // bounded: IDs are one byte
  for (uint8_t id : out.list()) {
    if (c.removed_ids.size() >= kKeptRemoved) c.removed_ids.erase(c.removed_ids.begin());
    c.removed_ids.push_back(id);
  }
  return true;
}

void Engine::SetInterfaces(Time now, std::vector<LocalInterface> interfaces,
                           packet::Actions& actions) {
  clock_ = now;
  SetInterfaces(std::move(interfaces));
  for (auto& [t, c] : conns_) {
    if (c->announce && c->announce_started && c->state == ConnState::kEstablished &&
        c->remote_key_known && !c->announce_at) {
      Announce(now, *c, actions);
    }
  }
}

}  // namespace mproxy::mptcp
