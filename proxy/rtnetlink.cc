#include "proxy/rtnetlink.h"

#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

namespace mproxy::proxy::rtnl {
namespace {

// Every message we build fits easily: a rule or route carries at most five small attributes.
constexpr size_t kBuildBuffer = 512;
// linux/if.h's IFF_LOWER_UP; that header cannot be included together with <net/if.h>.
constexpr uint32_t kIffLowerUp = 1U << 16;
constexpr uint8_t kTableUnspec = RT_TABLE_UNSPEC;

class Builder {
 public:
  Builder(uint16_t type, uint16_t flags, uint32_t seq) : buf_(kBuildBuffer, 0) {
    nlh_ = mnl_nlmsg_put_header(buf_.data());
    nlh_->nlmsg_type = type;
    nlh_->nlmsg_flags = flags;
    nlh_->nlmsg_seq = seq;
  }
  template <typename T>
  T* Header() {
    return static_cast<T*>(mnl_nlmsg_put_extra_header(nlh_, sizeof(T)));
  }
  nlmsghdr* nlh() { return nlh_; }
  void Address(uint16_t type, const packet::IpAddress& a) {
    mnl_attr_put(nlh_, type, a.bytes().size(), a.bytes().data());
  }
  std::vector<uint8_t> Finish() {
    buf_.resize(nlh_->nlmsg_len);
    return std::move(buf_);
  }

 private:
  std::vector<uint8_t> buf_;
  nlmsghdr* nlh_;
};

// A copy of one message in an aligned buffer, so libmnl's header casts are always valid whatever
// the caller's span points into. Empty when the message is shorter than its own header says.
struct Aligned {
  std::vector<uint8_t> bytes;
  const nlmsghdr* nlh = nullptr;
};
Aligned Align(packet::Bytes msg, uint16_t want_type1, uint16_t want_type2) {
  Aligned a;
  if (msg.size() < sizeof(nlmsghdr)) return a;
  nlmsghdr h;
  std::memcpy(&h, msg.data(), sizeof(h));
  if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > msg.size()) return a;
  if (h.nlmsg_type != want_type1 && h.nlmsg_type != want_type2) return a;
  a.bytes.assign(msg.begin(), msg.begin() + h.nlmsg_len);
  // libmnl walks attributes up to the *aligned* message end (mnl_nlmsg_get_payload_tail), so an
  // unaligned nlmsg_len would let it read past the copy (found by rtnetlink_fuzz): pad with zeros.
  a.bytes.resize(MNL_ALIGN(h.nlmsg_len), 0);
  a.nlh = reinterpret_cast<const nlmsghdr*>(a.bytes.data());
  return a;
}

// Attribute table up to `Max`, filled by mnl_attr_parse. An attribute running past the message
// is refused by libmnl itself (mnl_attr_ok).
template <size_t Max>
struct Attrs {
  std::array<const nlattr*, Max + 1> tb{};
};
template <size_t Max>
int Collect(const nlattr* attr, void* data) {
  auto* t = static_cast<Attrs<Max>*>(data);
  const int type = mnl_attr_get_type(attr);
  if (type >= 0 && static_cast<size_t>(type) <= Max) t->tb[type] = attr;
  return MNL_CB_OK;
}

template <size_t Max>
std::optional<Attrs<Max>> Parse(const nlmsghdr* nlh, size_t header) {
  if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + MNL_ALIGN(header)) return std::nullopt;
  Attrs<Max> t;
  if (mnl_attr_parse(nlh, header, &Collect<Max>, &t) < 0) return std::nullopt;
  return t;
}

std::optional<uint32_t> U32(const nlattr* a) {
  if (a == nullptr || mnl_attr_get_payload_len(a) != 4) return std::nullopt;
  return mnl_attr_get_u32(a);
}

// An address attribute of the family's exact size; nullopt for a missing or wrong-sized one.
std::optional<packet::IpAddress> Address(const nlattr* a, uint8_t af) {
  if (a == nullptr) return std::nullopt;
  const packet::Bytes b(static_cast<const uint8_t*>(mnl_attr_get_payload(a)),
                        mnl_attr_get_payload_len(a));
  if (af == AF_INET) return packet::IpAddress::V4(b);
  if (af == AF_INET6) return packet::IpAddress::V6(b);
  return std::nullopt;
}

std::optional<packet::IpFamily> FamilyOf(uint8_t af) {
  if (af == AF_INET) return packet::IpFamily::kV4;
  if (af == AF_INET6) return packet::IpFamily::kV6;
  return std::nullopt;
}

}  // namespace

bool Link::up() const { return (flags & IFF_UP) != 0; }
bool Link::carrier() const { return (flags & kIffLowerUp) != 0; }

uint8_t AfOf(packet::IpFamily f) { return f == packet::IpFamily::kV4 ? AF_INET : AF_INET6; }

std::vector<uint8_t> BuildDumpRequest(uint16_t type, uint8_t family, uint32_t seq) {
  Builder b(type, NLM_F_REQUEST | NLM_F_DUMP, seq);
  // Every RTM_GET* dump starts with a one-byte family; the kernel reads the header its type
  // implies, so each gets its own zeroed header.
  switch (type) {
    case RTM_GETLINK:
      b.Header<ifinfomsg>()->ifi_family = family;
      break;
    case RTM_GETADDR:
      b.Header<ifaddrmsg>()->ifa_family = family;
      break;
    case RTM_GETRULE:
      b.Header<fib_rule_hdr>()->family = family;
      break;
    default:
      b.Header<rtmsg>()->rtm_family = family;
      break;
  }
  return b.Finish();
}

std::vector<uint8_t> BuildRouteRequest(Op op, const Route& route, uint32_t seq) {
  const bool add = op == Op::kAdd;
  Builder b(add ? RTM_NEWROUTE : RTM_DELROUTE,
            NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), seq);
  auto* rtm = b.Header<rtmsg>();
  rtm->rtm_family = AfOf(route.family);
  rtm->rtm_dst_len = route.dst ? route.dst_len : 0;
  rtm->rtm_table = route.table < 256 ? static_cast<uint8_t>(route.table) : kTableUnspec;
  rtm->rtm_protocol = route.protocol;
  rtm->rtm_scope = route.scope;
  rtm->rtm_type = route.type;
  mnl_attr_put_u32(b.nlh(), RTA_TABLE, route.table);
  if (route.dst) b.Address(RTA_DST, *route.dst);
  if (route.gateway) b.Address(RTA_GATEWAY, *route.gateway);
  if (route.oif != 0) mnl_attr_put_u32(b.nlh(), RTA_OIF, route.oif);
  if (route.prefsrc) b.Address(RTA_PREFSRC, *route.prefsrc);
  if (route.priority != 0) mnl_attr_put_u32(b.nlh(), RTA_PRIORITY, route.priority);
  return b.Finish();
}

std::vector<uint8_t> BuildRuleRequest(Op op, const Rule& rule, uint32_t seq) {
  const bool add = op == Op::kAdd;
  Builder b(add ? RTM_NEWRULE : RTM_DELRULE,
            NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), seq);
  auto* frh = b.Header<fib_rule_hdr>();
  frh->family = AfOf(rule.family);
  frh->src_len = rule.src ? rule.src_len : 0;
  frh->table = rule.table < 256 ? static_cast<uint8_t>(rule.table) : kTableUnspec;
  frh->action = rule.action;
  mnl_attr_put_u32(b.nlh(), FRA_PRIORITY, rule.priority);
  mnl_attr_put_u32(b.nlh(), FRA_TABLE, rule.table);
  if (rule.src) b.Address(FRA_SRC, *rule.src);
  if (rule.fwmark) mnl_attr_put_u32(b.nlh(), FRA_FWMARK, *rule.fwmark);
  if (rule.fwmask) mnl_attr_put_u32(b.nlh(), FRA_FWMASK, *rule.fwmask);
  return b.Finish();
}

std::vector<uint8_t> BuildLinkMessage(const Link& link, uint32_t seq) {
  Builder b(RTM_NEWLINK, 0, seq);
  auto* ifi = b.Header<ifinfomsg>();
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = static_cast<int>(link.ifindex);
  ifi->ifi_flags = link.flags;
  mnl_attr_put_strz(b.nlh(), IFLA_IFNAME, link.name.c_str());
  return b.Finish();
}

std::vector<uint8_t> BuildAddrMessage(const Addr& addr, uint32_t seq) {
  Builder b(RTM_NEWADDR, 0, seq);
  auto* ifa = b.Header<ifaddrmsg>();
  ifa->ifa_family = AfOf(addr.address.family());
  ifa->ifa_prefixlen = addr.prefix_len;
  ifa->ifa_flags = static_cast<uint8_t>(addr.flags);
  ifa->ifa_scope = addr.scope;
  ifa->ifa_index = addr.ifindex;
  b.Address(IFA_ADDRESS, addr.address);
  if (addr.address.is_v4()) b.Address(IFA_LOCAL, addr.address);
  mnl_attr_put_u32(b.nlh(), IFA_FLAGS, addr.flags);
  return b.Finish();
}

std::optional<Link> ParseLink(packet::Bytes msg) {
  const Aligned a = Align(msg, RTM_NEWLINK, RTM_DELLINK);
  if (a.nlh == nullptr) return std::nullopt;
  auto t = Parse<IFLA_MAX>(a.nlh, sizeof(ifinfomsg));
  if (!t) return std::nullopt;
  ifinfomsg ifi;
  std::memcpy(&ifi, mnl_nlmsg_get_payload(a.nlh), sizeof(ifi));
  const nlattr* name = t->tb[IFLA_IFNAME];
  if (name == nullptr || mnl_attr_validate(name, MNL_TYPE_NUL_STRING) < 0) return std::nullopt;
  Link l;
  l.ifindex = static_cast<uint32_t>(ifi.ifi_index);
  l.name = mnl_attr_get_str(name);
  l.flags = ifi.ifi_flags;
  return l;
}

std::optional<Addr> ParseAddr(packet::Bytes msg) {
  const Aligned a = Align(msg, RTM_NEWADDR, RTM_DELADDR);
  if (a.nlh == nullptr) return std::nullopt;
  auto t = Parse<IFA_MAX>(a.nlh, sizeof(ifaddrmsg));
  if (!t) return std::nullopt;
  ifaddrmsg ifa;
  std::memcpy(&ifa, mnl_nlmsg_get_payload(a.nlh), sizeof(ifa));
  auto addr =
      Address(t->tb[IFA_LOCAL] != nullptr ? t->tb[IFA_LOCAL] : t->tb[IFA_ADDRESS], ifa.ifa_family);
  if (!addr) return std::nullopt;
  Addr out;
  out.ifindex = ifa.ifa_index;
  out.address = *addr;
  out.prefix_len = ifa.ifa_prefixlen;
  out.scope = ifa.ifa_scope;
  out.flags = U32(t->tb[IFA_FLAGS]).value_or(ifa.ifa_flags);
  return out;
}

std::optional<Route> ParseRoute(packet::Bytes msg) {
  const Aligned a = Align(msg, RTM_NEWROUTE, RTM_DELROUTE);
  if (a.nlh == nullptr) return std::nullopt;
  auto t = Parse<RTA_MAX>(a.nlh, sizeof(rtmsg));
  if (!t) return std::nullopt;
  rtmsg rtm;
  std::memcpy(&rtm, mnl_nlmsg_get_payload(a.nlh), sizeof(rtm));
  const auto family = FamilyOf(rtm.rtm_family);
  if (!family) return std::nullopt;
  Route r;
  r.family = *family;
  r.table = U32(t->tb[RTA_TABLE]).value_or(rtm.rtm_table);
  r.dst_len = rtm.rtm_dst_len;
  r.scope = rtm.rtm_scope;
  r.type = rtm.rtm_type;
  r.protocol = rtm.rtm_protocol;
  r.flags = rtm.rtm_flags;
  // A present but malformed address attribute refuses the whole route: copying or deleting a
  // route we only half understood could touch the wrong one.
  const auto opt_addr = [&](int type, std::optional<packet::IpAddress>& out) {
    if (t->tb[type] == nullptr) return true;
    out = Address(t->tb[type], rtm.rtm_family);
    return out.has_value();
  };
  if (!opt_addr(RTA_DST, r.dst) || !opt_addr(RTA_GATEWAY, r.gateway) ||
      !opt_addr(RTA_PREFSRC, r.prefsrc)) {
    return std::nullopt;
  }
  // A prefix length without its destination, or longer than the address, is not a route we can
  // reproduce: read as a default route it would be copied as one (found by rtnetlink_fuzz).
  const uint8_t bits = r.family == packet::IpFamily::kV4 ? 32 : 128;
  if ((r.dst_len > 0 && !r.dst) || r.dst_len > bits) return std::nullopt;
  if (t->tb[RTA_OIF] != nullptr) {
    auto oif = U32(t->tb[RTA_OIF]);
    if (!oif) return std::nullopt;
    r.oif = *oif;
  }
  r.priority = U32(t->tb[RTA_PRIORITY]).value_or(0);
  return r;
}

std::optional<Rule> ParseRule(packet::Bytes msg) {
  const Aligned a = Align(msg, RTM_NEWRULE, RTM_DELRULE);
  if (a.nlh == nullptr) return std::nullopt;
  auto t = Parse<FRA_MAX>(a.nlh, sizeof(fib_rule_hdr));
  if (!t) return std::nullopt;
  fib_rule_hdr frh;
  std::memcpy(&frh, mnl_nlmsg_get_payload(a.nlh), sizeof(frh));
  const auto family = FamilyOf(frh.family);
  if (!family) return std::nullopt;
  Rule r;
  r.family = *family;
  r.priority = U32(t->tb[FRA_PRIORITY]).value_or(0);
  r.table = U32(t->tb[FRA_TABLE]).value_or(frh.table);
  r.action = frh.action;
  if (t->tb[FRA_SRC] != nullptr) {
    r.src = Address(t->tb[FRA_SRC], frh.family);
    if (!r.src || frh.src_len > (r.family == packet::IpFamily::kV4 ? 32 : 128)) return std::nullopt;
    r.src_len = frh.src_len;
  }
  r.fwmark = U32(t->tb[FRA_FWMARK]);
  r.fwmask = U32(t->tb[FRA_FWMASK]);
  return r;
}

uint16_t MessageType(packet::Bytes msg) {
  if (msg.size() < sizeof(nlmsghdr)) return 0;
  nlmsghdr h;
  std::memcpy(&h, msg.data(), sizeof(h));
  return h.nlmsg_type;
}

std::vector<packet::Bytes> SplitMessages(packet::Bytes datagram) {
  std::vector<packet::Bytes> out;
  size_t off = 0;
  while (datagram.size() - off >= sizeof(nlmsghdr)) {
    nlmsghdr h;
    std::memcpy(&h, datagram.data() + off, sizeof(h));
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > datagram.size() - off) break;
    out.push_back(datagram.subspan(off, h.nlmsg_len));
    off += MNL_ALIGN(h.nlmsg_len);
    if (off > datagram.size()) break;
  }
  return out;
}

ReplyStatus StatusOf(packet::Bytes msg) {
  ReplyStatus s;
  const uint16_t type = MessageType(msg);
  if (type == NLMSG_DONE) {
    s.done = true;
  } else if (type == NLMSG_ERROR) {
    int32_t err = 0;
    // An error message too short to hold its code is treated as a failure, never as an ACK.
    if (msg.size() < sizeof(nlmsghdr) + sizeof(err)) {
      s.error = EPROTO;
    } else {
      std::memcpy(&err, msg.data() + sizeof(nlmsghdr), sizeof(err));
      s.error = -err;
    }
  }
  return s;
}

}  // namespace mproxy::proxy::rtnl
