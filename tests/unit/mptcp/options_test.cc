#include "mptcp/options.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "packet/counters.h"

namespace mproxy::mptcp {
namespace {

using packet::Bytes;
using packet::ByteWriter;

std::vector<uint8_t> Hex(std::string_view s) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char c : s) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      continue;
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  return out;
}

std::vector<uint8_t> EmitToVector(const Option& o) {
  std::array<uint8_t, 64> buf{};
  ByteWriter w(buf);
  EXPECT_TRUE(Emit(o, w));
  EXPECT_EQ(w.offset(), EncodedLength(o));
  return std::vector<uint8_t>(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(w.offset()));
}

// Parses `hex`, expects success, and checks that emitting the result reproduces the bytes.
template <typename T>
T ParseGolden(std::string_view hex) {
  const std::vector<uint8_t> bytes = Hex(hex);
  const ParsedOption p = ParseOption(bytes);
  EXPECT_EQ(p.status, OptionStatus::kAccepted) << hex;
  const T* v = std::get_if<T>(&p.option);
  EXPECT_NE(v, nullptr) << hex;
  if (v == nullptr) return T{};
  EXPECT_EQ(EmitToVector(*v), bytes) << hex;
  EXPECT_EQ(SubtypeOf(p.option), T::kSubtype);
  return *v;
}

OptionStatus StatusOf(const std::vector<uint8_t>& b) { return ParseOption(b).status; }

// -----------------------------------------------------------------------------------------------
// Golden bytes (interop §1.2 - §1.6; "seen from Linux" examples where the doc has them)

TEST(MpCapableTest, SynGolden) {
  const MpCapable m = ParseGolden<MpCapable>("1e 04 01 01");
  EXPECT_EQ(m.form, MpCapable::Form::kSyn);
  EXPECT_EQ(m.version, 1);
  EXPECT_FALSE(m.checksum_required());
  EXPECT_EQ(EmitToVector(MpCapable{}), Hex("1e 04 01 01"));  // the default is Linux's SYN

  const MpCapable c = ParseGolden<MpCapable>("1e 04 01 81");  // checksum_enabled=1
  EXPECT_TRUE(c.checksum_required());
  const MpCapable d = ParseGolden<MpCapable>("1e 04 01 21");  // allow_join_initial_addr_port=0
  EXPECT_EQ(d.flags & kMpcFlagNoJoinInitial, kMpcFlagNoJoinInitial);
}

TEST(MpCapableTest, SynAckGolden) {
  const MpCapable m = ParseGolden<MpCapable>("1e 0c 01 01 e8 7d bb 19 ae 35 23 45");
  EXPECT_EQ(m.form, MpCapable::Form::kSynAck);
  EXPECT_EQ(m.sender_key, 0xe87dbb19ae352345u);
  EXPECT_EQ(m.receiver_key, 0u);
}

TEST(MpCapableTest, ThirdAckGolden) {
  const MpCapable m =
      ParseGolden<MpCapable>("1e 14 01 01 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45");
  EXPECT_EQ(m.form, MpCapable::Form::kAck);
  EXPECT_EQ(m.sender_key, 0x511f0ebfef7218bfu);
  EXPECT_EQ(m.receiver_key, 0xe87dbb19ae352345u);
}

TEST(MpCapableTest, AckDataGolden) {
  const MpCapable m =
      ParseGolden<MpCapable>("1e 16 01 01 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45 05 dc");
  EXPECT_EQ(m.form, MpCapable::Form::kAckData);
  EXPECT_EQ(m.data_len, 1500);
}

TEST(MpCapableTest, RealAckDataChecksumExample) {
  // interop §1.2: captured from Linux with checksums negotiated.
  const MpCapable m = ParseGolden<MpCapable>(
      "1e 18 01 81 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45 7a 60 8f e3");
  EXPECT_EQ(m.form, MpCapable::Form::kAckDataCsum);
  EXPECT_TRUE(m.checksum_required());
  EXPECT_EQ(m.sender_key, 0x511f0ebfef7218bfu);
  EXPECT_EQ(m.receiver_key, 0xe87dbb19ae352345u);
  EXPECT_EQ(m.data_len, 0x7a60);
  EXPECT_EQ(m.checksum, 0x8fe3);
}

TEST(MpCapableTest, FlagsValidityRuleOverAllValues) {
  // Linux: (flags & 0x1F) == 0x01 and B == 0, else the option is ignored (interop §1.2).
  for (int f = 0; f < 256; ++f) {
    std::vector<uint8_t> b = Hex("1e 04 01 00");
    b[3] = static_cast<uint8_t>(f);
    const bool valid = (f & 0x1f) == 0x01 && (f & 0x40) == 0;
    EXPECT_EQ(StatusOf(b), valid ? OptionStatus::kAccepted : OptionStatus::kBadFlags) << f;
    EXPECT_EQ(MpcFlagsValid(static_cast<uint8_t>(f)), valid);
    // The same on the key-carrying forms.
    std::vector<uint8_t> a = Hex("1e 14 01 00 01 02 03 04 05 06 07 08 11 12 13 14 15 16 17 18");
    a[3] = static_cast<uint8_t>(f);
    EXPECT_EQ(StatusOf(a), valid ? OptionStatus::kAccepted : OptionStatus::kBadFlags) << f;
  }
}

TEST(MpCapableTest, VersionRules) {
  // SYN: any version >= 1 (answered with v1); v0 ignored.
  EXPECT_EQ(StatusOf(Hex("1e 04 00 01")), OptionStatus::kBadVersion);
  EXPECT_EQ(StatusOf(Hex("1e 04 02 01")), OptionStatus::kAccepted);
  EXPECT_EQ(StatusOf(Hex("1e 04 0f 01")), OptionStatus::kAccepted);
  // Other forms: exactly 1.
  for (uint8_t v : {0, 2, 15}) {
    std::vector<uint8_t> b = Hex("1e 0c 01 01 01 02 03 04 05 06 07 08");
    b[2] = v;
    EXPECT_EQ(StatusOf(b), OptionStatus::kBadVersion) << int{v};
  }
  // A v0 (RFC 6824) SYN carried the key: 12 bytes with version 0 -> ignored.
  EXPECT_EQ(StatusOf(Hex("1e 0c 00 81 01 02 03 04 05 06 07 08")), OptionStatus::kBadVersion);
}

TEST(MpJoinTest, Golden) {
  const MpJoin syn = ParseGolden<MpJoin>("1e 0c 11 05 d3 7f b4 f4 01 02 03 04");
  EXPECT_EQ(syn.form, MpJoin::Form::kSyn);
  EXPECT_TRUE(syn.backup);
  EXPECT_EQ(syn.address_id, 5);
  EXPECT_EQ(syn.token, 0xd37fb4f4u);
  EXPECT_EQ(syn.nonce, 0x01020304u);

  const MpJoin synack = ParseGolden<MpJoin>("1e 10 10 00 bb 13 a9 15 cf 31 92 6d a0 b0 c0 d0");
  EXPECT_EQ(synack.form, MpJoin::Form::kSynAck);
  EXPECT_FALSE(synack.backup);
  EXPECT_EQ(synack.address_id, 0);
  EXPECT_EQ(synack.truncated_hmac, 0xbb13a915cf31926du);
  EXPECT_EQ(synack.nonce, 0xa0b0c0d0u);

  const MpJoin ack = ParseGolden<MpJoin>(
      "1e 18 10 00 35 3d ed 03 c4 f8 27 6f 37 03 03 46 48 c0 3b 6e 77 9e be 16");
  EXPECT_EQ(ack.form, MpJoin::Form::kAck);
  EXPECT_EQ(ack.hmac[0], 0x35);
  EXPECT_EQ(ack.hmac[19], 0x16);
}

TEST(MpJoinTest, AckReservedBitsIgnored) {
  const ParsedOption p =
      ParseOption(Hex("1e 18 1f ff 35 3d ed 03 c4 f8 27 6f 37 03 03 46 48 c0 3b 6e 77 9e be 16"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(EmitToVector(p.option),
            Hex("1e 18 10 00 35 3d ed 03 c4 f8 27 6f 37 03 03 46 48 c0 3b 6e 77 9e be 16"));
}

TEST(DssTest, Ack32Golden) {
  const Dss d = ParseGolden<Dss>("1e 08 20 01 ca 69 6b b8");  // seen from Linux
  ASSERT_TRUE(d.data_ack.has_value());
  EXPECT_EQ(d.data_ack->value, 0xca696bb8u);
  EXPECT_FALSE(d.data_ack->is64);
  EXPECT_FALSE(d.mapping.has_value());
  EXPECT_FALSE(d.data_fin);
}

TEST(DssTest, Ack64Golden) {
  const Dss d = ParseGolden<Dss>("1e 0c 20 03 a2 8a 7c fd 0f 7e 4f 4a");
  ASSERT_TRUE(d.data_ack.has_value());
  EXPECT_TRUE(d.data_ack->is64);
  EXPECT_EQ(d.data_ack->value, 0xa28a7cfd0f7e4f4au);
}

TEST(DssTest, Ack32Map64Golden) {
  // interop §1.4: "1e 16 20 0d <ack4> <dsn8> 00 00 00 01 7a 60".
  const Dss d =
      ParseGolden<Dss>("1e 16 20 0d ca 69 6b b8 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60");
  ASSERT_TRUE(d.data_ack && d.mapping);
  EXPECT_EQ(d.data_ack->value, 0xca696bb8u);
  EXPECT_TRUE(d.mapping->dsn64);
  EXPECT_EQ(d.mapping->dsn, 0xa28a7cfd0f7e4f4au);
  EXPECT_EQ(d.mapping->ssn, 1u);
  EXPECT_EQ(d.mapping->data_len, 0x7a60);
  EXPECT_FALSE(d.mapping->checksum.has_value());
  EXPECT_FALSE(d.mapping->infinite());
}

TEST(DssTest, AllLinuxFormsGolden) {
  struct Case {
    const char* hex;
    size_t len;
  } cases[] = {
      {"1e 18 20 0d ca 69 6b b8 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60 8f e3", 24},
      {"1e 1a 20 0f 00 00 00 00 00 00 00 07 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60", 26},
      {"1e 1c 20 0f 00 00 00 00 00 00 00 07 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60 8f e3", 28},
      // DATA_FIN on an empty segment: DSN of the DATA_FIN, SSN 0, length 1 (interop §1.4).
      {"1e 16 20 1d ca 69 6b b8 a2 8a 7c fd 0f 7e 4f 4b 00 00 00 00 00 01", 22},
      // 32-bit DSN mapping, no ack (legal, Linux never sends it).
      {"1e 0e 20 04 0f 7e 4f 4a 00 00 00 01 05 dc", 14},
      // Infinite mapping with checksum 0 (RFC 8684 §3.7).
      {"1e 18 20 0d ca 69 6b b8 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 00 00 00 00", 24},
      // Nothing at all (legal: Linux parses it as a DSS without ack or mapping).
      {"1e 04 20 00", 4},
  };
  for (const Case& c : cases) {
    const Dss d = ParseGolden<Dss>(c.hex);
    EXPECT_EQ(d.EncodedLength(), c.len) << c.hex;
  }
  const Dss fin = ParseGolden<Dss>(cases[3].hex);
  EXPECT_TRUE(fin.data_fin);
  EXPECT_EQ(fin.mapping->ssn, 0u);
  EXPECT_EQ(fin.mapping->data_len, 1);
  const Dss inf = ParseGolden<Dss>(cases[5].hex);
  EXPECT_TRUE(inf.mapping->infinite());
  EXPECT_EQ(inf.mapping->checksum, uint16_t{0});
}

TEST(DssTest, ReservedBitsMasked) {
  // Reserved flag bits (0xe0) and the reserved nibble are ignored, as Linux does.
  const ParsedOption p = ParseOption(Hex("1e 08 2f e1 ca 69 6b b8"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(EmitToVector(p.option), Hex("1e 08 20 01 ca 69 6b b8"));
}

TEST(DssTest, TwoTrailingBytesWithoutMappingAcceptedAndIgnored) {
  // Linux accepts expected+2 for every flag combination but reads a checksum only with a
  // mapping, so an ack-only DSS with 2 extra bytes is a plain ack-only DSS.
  const ParsedOption p = ParseOption(Hex("1e 0a 20 01 ca 69 6b b8 12 34"));
  ASSERT_TRUE(p.ok());
  const Dss& d = std::get<Dss>(p.option);
  EXPECT_FALSE(d.mapping.has_value());
  EXPECT_EQ(EmitToVector(p.option), Hex("1e 08 20 01 ca 69 6b b8"));
}

TEST(DssTest, ExpectedLengthFromFlags) {
  // Exactly base and base+2 are accepted for each of the 32 flag combinations.
  for (int flags = 0; flags < 32; ++flags) {
    const size_t base = DssBaseLength(static_cast<uint8_t>(flags));
    for (size_t len = 3; len <= 40; ++len) {
      std::vector<uint8_t> b(len, 0x5a);
      b[0] = 30;
      b[1] = static_cast<uint8_t>(len);
      b[2] = 0x20;
      if (len > 3) b[3] = static_cast<uint8_t>(flags);
      const bool ok = len == base || len == base + 2;
      EXPECT_EQ(StatusOf(b), ok ? OptionStatus::kAccepted : OptionStatus::kBadLength)
          << "flags " << flags << " len " << len;
    }
  }
}

TEST(DssTest, Emit32BitFormsCarryLowBits) {
  Dss d;
  d.data_ack = DssDataAck{0x1122334455667788u, false};
  d.mapping = DssMapping{0xaabbccdd01020304u, false, 7, 100, std::nullopt};
  EXPECT_EQ(EmitToVector(d), Hex("1e 12 20 05 55 66 77 88 01 02 03 04 00 00 00 07 00 64"));
}

TEST(AddAddrTest, Golden) {
  // interop §1.5: Linux server announcing 198.18.2.2 id 1, and the echo.
  const AddAddr a = ParseGolden<AddAddr>("1e 10 30 01 c6 12 02 02 25 ac c3 d2 fe b8 30 27");
  EXPECT_FALSE(a.echo);
  EXPECT_EQ(a.address_id, 1);
  EXPECT_EQ(a.address, packet::IpAddress::V4(0xc6120202u));
  EXPECT_FALSE(a.port.has_value());
  EXPECT_EQ(a.hmac, 0x25acc3d2feb83027u);

  const AddAddr e = ParseGolden<AddAddr>("1e 08 31 01 c6 12 02 02");
  EXPECT_TRUE(e.echo);
  EXPECT_EQ(e.hmac, 0u);
  EXPECT_EQ(e.address, a.address);

  const AddAddr p = ParseGolden<AddAddr>("1e 12 30 02 c6 12 02 02 1f 90 70 b8 0b 7a 24 a8 9a a5");
  EXPECT_EQ(p.port, uint16_t{8080});
  const AddAddr ep = ParseGolden<AddAddr>("1e 0a 31 02 c6 12 02 02 1f 90");
  EXPECT_EQ(ep.port, uint16_t{8080});

  const std::string v6 = "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01";
  const AddAddr a6 = ParseGolden<AddAddr>("1e 1c 30 03 " + v6 + " 77 34 00 b7 ba c8 0c 38");
  EXPECT_TRUE(a6.address.is_v6());
  EXPECT_EQ(a6.address, *packet::IpAddress::Parse("2001:db8::1"));
  EXPECT_EQ(ParseGolden<AddAddr>("1e 1e 30 03 " + v6 + " 01 bb 77 34 00 b7 ba c8 0c 38").port,
            uint16_t{443});
  EXPECT_TRUE(ParseGolden<AddAddr>("1e 14 31 03 " + v6).echo);
  EXPECT_EQ(ParseGolden<AddAddr>("1e 16 31 03 " + v6 + " 01 bb").port, uint16_t{443});
}

TEST(AddAddrTest, LengthsByEchoBit) {
  const std::set<size_t> with_hmac = {16, 18, 28, 30};
  const std::set<size_t> echo = {8, 10, 20, 22};
  for (uint8_t b2 : {0x30, 0x31}) {
    for (size_t len = 3; len <= 40; ++len) {
      std::vector<uint8_t> b(len, 0x11);
      b[0] = 30;
      b[1] = static_cast<uint8_t>(len);
      b[2] = b2;
      const bool ok = (b2 & 1) ? echo.count(len) > 0 : with_hmac.count(len) > 0;
      EXPECT_EQ(StatusOf(b), ok ? OptionStatus::kAccepted : OptionStatus::kBadLength)
          << int{b2} << " " << len;
    }
  }
}

TEST(RemoveAddrTest, Golden) {
  const RemoveAddr r = ParseGolden<RemoveAddr>("1e 04 40 01");
  EXPECT_EQ(r.count, 1);
  EXPECT_EQ(r.list()[0], 1);
  const RemoveAddr r3 = ParseGolden<RemoveAddr>("1e 06 40 01 07 ff");
  ASSERT_EQ(r3.list().size(), 3u);
  EXPECT_EQ(r3.list()[2], 0xff);
  EXPECT_EQ(ParseGolden<RemoveAddr>("1e 0b 40 01 02 03 04 05 06 07 08").count, 8);
}

TEST(RemoveAddrTest, LengthLimits) {
  EXPECT_EQ(StatusOf(Hex("1e 03 40")), OptionStatus::kBadLength);  // no ID
  EXPECT_EQ(StatusOf(Hex("1e 0c 40 01 02 03 04 05 06 07 08 09")),
            OptionStatus::kBadLength);  // 9 IDs > MPTCP_RM_IDS_MAX
}

TEST(MpPrioTest, Golden) {
  EXPECT_TRUE(ParseGolden<MpPrio>("1e 03 51").backup);
  EXPECT_FALSE(ParseGolden<MpPrio>("1e 03 50").backup);
  // The v0 form with an address ID is ignored by Linux.
  EXPECT_EQ(StatusOf(Hex("1e 04 51 01")), OptionStatus::kBadLength);
}

TEST(MpFailTest, Golden) {
  EXPECT_EQ(ParseGolden<MpFail>("1e 0c 60 00 a2 8a 7c fd 0f 7e 4f 4a").dsn, 0xa28a7cfd0f7e4f4au);
}

TEST(MpFastcloseTest, Golden) {
  EXPECT_EQ(ParseGolden<MpFastclose>("1e 0c 70 00 e8 7d bb 19 ae 35 23 45").receiver_key,
            0xe87dbb19ae352345u);
}

TEST(MpTcpRstTest, Golden) {
  const MpTcpRst r = ParseGolden<MpTcpRst>("1e 04 81 01");
  EXPECT_TRUE(r.transient());
  EXPECT_EQ(r.reason, static_cast<uint8_t>(TcpRstReason::kMptcpError));
  const MpTcpRst r6 = ParseGolden<MpTcpRst>("1e 04 80 06");
  EXPECT_FALSE(r6.transient());
  EXPECT_EQ(r6.reason, static_cast<uint8_t>(TcpRstReason::kMiddleboxInterference));
  EXPECT_EQ(ParseGolden<MpTcpRst>("1e 04 8f 03").flags, 0x0f);
}

TEST(OptionTest, UnknownAndExperimentalSubtypes) {
  for (int st = 9; st <= 15; ++st) {
    for (size_t len = 3; len <= 40; ++len) {
      std::vector<uint8_t> b(len, 0);
      b[0] = 30;
      b[1] = static_cast<uint8_t>(len);
      b[2] = static_cast<uint8_t>(st << 4);
      EXPECT_EQ(StatusOf(b),
                st == 15 ? OptionStatus::kExperimental : OptionStatus::kUnknownSubtype);
    }
  }
}

TEST(OptionTest, NotMptcpAndLengthByteMismatch) {
  EXPECT_EQ(StatusOf({}), OptionStatus::kNotMptcp);
  EXPECT_EQ(StatusOf({30}), OptionStatus::kNotMptcp);
  EXPECT_EQ(StatusOf(Hex("02 04 05 b4")), OptionStatus::kNotMptcp);  // MSS
  EXPECT_EQ(StatusOf(Hex("1e 02")), OptionStatus::kBadLength);
  EXPECT_EQ(StatusOf(Hex("1e 05 01 01")), OptionStatus::kBadLength);  // length byte says 5
  EXPECT_EQ(StatusOf(Hex("1e 03 01 01")), OptionStatus::kBadLength);  // says 3, 4 given
}

// -----------------------------------------------------------------------------------------------
// Every prefix and every wrong length, per subtype

const std::vector<std::string> kGoldens = {
    "1e 04 01 01",
    "1e 0c 01 01 e8 7d bb 19 ae 35 23 45",
    "1e 14 01 01 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45",
    "1e 16 01 01 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45 05 dc",
    "1e 18 01 81 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45 7a 60 8f e3",
    "1e 0c 11 05 d3 7f b4 f4 01 02 03 04",
    "1e 10 10 00 bb 13 a9 15 cf 31 92 6d a0 b0 c0 d0",
    "1e 18 10 00 35 3d ed 03 c4 f8 27 6f 37 03 03 46 48 c0 3b 6e 77 9e be 16",
    "1e 08 20 01 ca 69 6b b8",
    "1e 0c 20 03 a2 8a 7c fd 0f 7e 4f 4a",
    "1e 16 20 0d ca 69 6b b8 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60",
    "1e 1c 20 0f 00 00 00 00 00 00 00 07 a2 8a 7c fd 0f 7e 4f 4a 00 00 00 01 7a 60 8f e3",
    "1e 10 30 01 c6 12 02 02 25 ac c3 d2 fe b8 30 27",
    "1e 08 31 01 c6 12 02 02",
    "1e 1e 30 03 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 01 bb 77 34 00 b7 ba c8 0c 38",
    "1e 06 40 01 07 ff",
    "1e 03 51",
    "1e 0c 60 00 a2 8a 7c fd 0f 7e 4f 4a",
    "1e 0c 70 00 e8 7d bb 19 ae 35 23 45",
    "1e 04 81 01",
};

TEST(TruncationTest, EveryPrefixIsRejected) {
  for (const std::string& hex : kGoldens) {
    const std::vector<uint8_t> full = Hex(hex);
    ASSERT_TRUE(ParseOption(full).ok()) << hex;
    for (size_t n = 0; n < full.size(); ++n) {
      // The length byte still claims the full size: never read past the span.
      const std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
      EXPECT_EQ(StatusOf(prefix), n < 2 ? OptionStatus::kNotMptcp : OptionStatus::kBadLength)
          << hex << " prefix " << n;
    }
  }
}

// The lengths Linux accepts per subtype (interop §1 table), flags as in the golden option.
std::set<size_t> AcceptedLengths(const std::vector<uint8_t>& golden) {
  switch (golden[2] >> 4) {
    case 0x0:
      return {4, 12, 20, 22, 24};
    case 0x1:
      return {12, 16, 24};
    case 0x2: {
      const size_t base = DssBaseLength(golden[3] & kDssFlagMask);
      return {base, base + 2};
    }
    case 0x3:
      return (golden[2] & 1) ? std::set<size_t>{8, 10, 20, 22} : std::set<size_t>{16, 18, 28, 30};
    case 0x4:
      return {4, 5, 6, 7, 8, 9, 10, 11};
    case 0x5:
      return {3};
    case 0x6:
    case 0x7:
      return {12};
    case 0x8:
      return {4};
  }
  return {};
}

TEST(TruncationTest, EveryLengthPerSubtype) {
  // A well-formed TLV (length byte == size) of every size 3..255, the body taken from the golden
  // option and padded: accepted exactly at the lengths Linux accepts, kBadLength otherwise.
  for (const std::string& hex : kGoldens) {
    const std::vector<uint8_t> golden = Hex(hex);
    const std::set<size_t> ok = AcceptedLengths(golden);
    for (size_t len = 3; len <= 255; ++len) {
      std::vector<uint8_t> b(len, 0);
      for (size_t i = 0; i < len && i < golden.size(); ++i) b[i] = golden[i];
      b[1] = static_cast<uint8_t>(len);
      const ParsedOption p = ParseOption(b);
      EXPECT_EQ(p.status, ok.count(len) ? OptionStatus::kAccepted : OptionStatus::kBadLength)
          << hex << " len " << len;
      if (p.ok()) {
        EXPECT_EQ(SubtypeOf(p.option), static_cast<Subtype>(golden[2] >> 4));
        EXPECT_EQ(ParseOption(EmitToVector(p.option)).option, p.option);
      }
    }
  }
}

// -----------------------------------------------------------------------------------------------
// Randomized parse(emit(x)) == x

class RoundTripTest : public ::testing::Test {
 protected:
  std::mt19937_64 rng_{20240521};
  uint64_t U64() { return rng_(); }
  uint32_t U32() { return static_cast<uint32_t>(rng_()); }
  uint16_t U16() { return static_cast<uint16_t>(rng_()); }
  uint8_t U8() { return static_cast<uint8_t>(rng_()); }
  bool Bool() { return (rng_() & 1) != 0; }

  MpCapable RandomMpCapable() {
    MpCapable m;
    m.form = static_cast<MpCapable::Form>(rng_() % 5);
    m.version = m.form == MpCapable::Form::kSyn ? static_cast<uint8_t>(1 + rng_() % 15) : 1;
    m.flags = static_cast<uint8_t>((U8() & 0xa0) | kMpcFlagHmacSha256);  // A, C random
    if (m.form != MpCapable::Form::kSyn) m.sender_key = U64();
    if (m.is_ack_form()) m.receiver_key = U64();
    if (m.form >= MpCapable::Form::kAckData) m.data_len = U16();
    if (m.form == MpCapable::Form::kAckDataCsum) m.checksum = U16();
    return m;
  }
  MpJoin RandomMpJoin() {
    MpJoin j;
    j.form = static_cast<MpJoin::Form>(rng_() % 3);
    if (j.form == MpJoin::Form::kAck) {
      for (uint8_t& b : j.hmac) b = U8();
      return j;
    }
    j.backup = Bool();
    j.address_id = U8();
    j.nonce = U32();
    if (j.form == MpJoin::Form::kSyn) {
      j.token = U32();
    } else {
      j.truncated_hmac = U64();
    }
    return j;
  }
  Dss RandomDss() {
    Dss d;
    d.data_fin = Bool();
    if (Bool()) {
      const bool is64 = Bool();
      d.data_ack = DssDataAck{is64 ? U64() : U32(), is64};
    }
    if (Bool()) {
      DssMapping m;
      m.dsn64 = Bool();
      m.dsn = m.dsn64 ? U64() : U32();
      m.ssn = U32();
      m.data_len = U16();
      if (Bool()) m.checksum = U16();
      d.mapping = m;
    }
    return d;
  }
  AddAddr RandomAddAddr() {
    AddAddr a;
    a.echo = Bool();
    a.address_id = U8();
    if (Bool()) {
      std::array<uint8_t, 16> b{};
      for (uint8_t& x : b) x = U8();
      a.address = *packet::IpAddress::V6(b);
    } else {
      a.address = packet::IpAddress::V4(U32());
    }
    if (Bool()) a.port = U16();
    if (!a.echo) a.hmac = U64();
    return a;
  }
  RemoveAddr RandomRemoveAddr() {
    RemoveAddr r;
    r.count = static_cast<uint8_t>(1 + rng_() % kMaxRemoveIds);
    for (size_t i = 0; i < r.count; ++i) r.ids[i] = U8();
    return r;
  }
  Option RandomOption() {
    switch (rng_() % 9) {
      case 0:
        return RandomMpCapable();
      case 1:
        return RandomMpJoin();
      case 2:
        return RandomDss();
      case 3:
        return RandomAddAddr();
      case 4:
        return RandomRemoveAddr();
      case 5:
        return MpPrio{Bool()};
      case 6:
        return MpFail{U64()};
      case 7:
        return MpFastclose{U64()};
      default:
        return MpTcpRst{static_cast<uint8_t>(U8() & 0x0f), U8()};
    }
  }
};

TEST_F(RoundTripTest, RandomValuesOfEveryType) {
  std::array<int, 9> seen{};
  for (int i = 0; i < 20000; ++i) {
    const Option o = RandomOption();
    ++seen[static_cast<size_t>(o.index())];
    const std::vector<uint8_t> bytes = EmitToVector(o);
    ASSERT_EQ(bytes.size(), EncodedLength(o));
    ASSERT_LE(bytes.size(), 40u);
    const ParsedOption p = ParseOption(bytes);
    ASSERT_EQ(p.status, OptionStatus::kAccepted) << i;
    ASSERT_EQ(p.option, o) << i;
    ASSERT_EQ(SubtypeOf(p.option), SubtypeOf(o));
  }
  for (int n : seen) EXPECT_GT(n, 1000);
}

TEST_F(RoundTripTest, EmitFailsWithoutRoomAndWritesNothing) {
  for (int i = 0; i < 2000; ++i) {
    const Option o = RandomOption();
    const size_t len = EncodedLength(o);
    std::array<uint8_t, 64> buf{};
    ByteWriter w(std::span<uint8_t>(buf).first(len - 1));
    EXPECT_FALSE(Emit(o, w));
    EXPECT_EQ(w.offset(), 0u);
    for (uint8_t b : buf) EXPECT_EQ(b, 0);
  }
}

TEST(EmitTest, UnencodableValuesRejected) {
  std::array<uint8_t, 64> buf{};
  {
    ByteWriter w(buf);
    EXPECT_FALSE(RemoveAddr{}.Emit(w));  // no ID
    RemoveAddr nine;
    nine.count = 9;
    EXPECT_FALSE(nine.Emit(w));
    MpCapable v16;
    v16.version = 16;
    EXPECT_FALSE(v16.Emit(w));
    EXPECT_FALSE((MpTcpRst{0x10, 0}.Emit(w)));
    EXPECT_EQ(w.offset(), 0u);
  }
}

TEST(EmitTest, LinuxByteExactExamples) {
  // interop §1.6 and §1.2 forms built from values, not parsed.
  EXPECT_EQ(EmitToVector(MpPrio{true}), Hex("1e 03 51"));
  EXPECT_EQ(EmitToVector(MpFastclose{0xe87dbb19ae352345u}),
            Hex("1e 0c 70 00 e8 7d bb 19 ae 35 23 45"));
  EXPECT_EQ(EmitToVector(MpTcpRst{kTcpRstFlagTransient, 6}), Hex("1e 04 81 06"));
  RemoveAddr rm;
  rm.count = 1;
  rm.ids[0] = 1;
  EXPECT_EQ(EmitToVector(rm), Hex("1e 04 40 01"));
  AddAddr echo;
  echo.echo = true;
  echo.address_id = 1;
  echo.address = packet::IpAddress::V4(0xc6120202u);
  EXPECT_EQ(EmitToVector(echo), Hex("1e 08 31 01 c6 12 02 02"));
  Dss ack;
  ack.data_ack = DssDataAck{0xca696bb8u, false};
  EXPECT_EQ(EmitToVector(ack), Hex("1e 08 20 01 ca 69 6b b8"));
  MpJoin third;
  third.form = MpJoin::Form::kAck;
  third.hmac[0] = 0xaa;
  EXPECT_EQ(EmitToVector(third),
            Hex("1e 18 10 00 aa 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"));
  MpCapable ack_data;
  ack_data.form = MpCapable::Form::kAckDataCsum;
  ack_data.flags = kMpcFlagChecksum | kMpcFlagHmacSha256;
  ack_data.sender_key = 0x511f0ebfef7218bfu;
  ack_data.receiver_key = 0xe87dbb19ae352345u;
  ack_data.data_len = 0x7a60;
  ack_data.checksum = 0x8fe3;
  EXPECT_EQ(EmitToVector(ack_data),
            Hex("1e 18 01 81 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45 7a 60 8f e3"));
}

// -----------------------------------------------------------------------------------------------
// Co-occurrence (interop §1.7) and segment context

constexpr SegmentFlags kSyn{true, false, false, false};
constexpr SegmentFlags kSynAck{true, true, false, false};
constexpr SegmentFlags kPureAck{false, true, false, false};
constexpr SegmentFlags kDataAck{false, true, false, true};
constexpr SegmentFlags kRstAck{false, true, true, false};

SegmentOptions Interpret(SegmentFlags f, const std::vector<std::string>& hex_options) {
  std::vector<std::vector<uint8_t>> storage;
  for (const std::string& h : hex_options) storage.push_back(Hex(h));
  std::vector<Bytes> views(storage.begin(), storage.end());
  return ParseSegmentOptions(f, views);
}

const char kMpcSynHex[] = "1e 04 01 01";
const char kMpcAckHex[] = "1e 14 01 01 51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45";
const char kJoinSynHex[] = "1e 0c 11 05 d3 7f b4 f4 01 02 03 04";
const char kDssHex[] = "1e 08 20 01 ca 69 6b b8";
const char kDss2Hex[] = "1e 08 20 01 00 00 00 01";
const char kAddHex[] = "1e 10 30 01 c6 12 02 02 25 ac c3 d2 fe b8 30 27";
const char kRmHex[] = "1e 04 40 01";
const char kPrioHex[] = "1e 03 51";
const char kFailHex[] = "1e 0c 60 00 a2 8a 7c fd 0f 7e 4f 4a";
const char kFastcloseHex[] = "1e 0c 70 00 e8 7d bb 19 ae 35 23 45";
const char kRstHex[] = "1e 04 81 01";

TEST(SegmentOptionsTest, LinuxPairsAccepted) {
  // Pairs Linux itself sends (interop §1.6): DSS + MP_PRIO, DSS ack + RM_ADDR,
  // MP_FASTCLOSE + MP_TCPRST on RST.
  SegmentOptions s = Interpret(kPureAck, {kDssHex, "1e 03 51"});
  EXPECT_TRUE(s.dss && s.mp_prio);
  EXPECT_EQ(s.count(OptionStatus::kAccepted), 2);
  s = Interpret(kPureAck, {"1e 0c 20 03 00 00 00 00 00 00 00 01", kRmHex});
  EXPECT_TRUE(s.dss && s.remove_addr);
  s = Interpret(kRstAck, {kFastcloseHex, kRstHex});
  EXPECT_TRUE(s.mp_fastclose && s.mp_tcprst);
  // ADD_ADDR alone on a pure ACK (Linux sends it without DSS).
  s = Interpret(kPureAck, {kAddHex});
  EXPECT_TRUE(s.add_addr && !s.dss);
}

TEST(SegmentOptionsTest, SecondOfSameSubtypeIgnored) {
  const SegmentOptions s = Interpret(kPureAck, {kDssHex, kDss2Hex});
  ASSERT_TRUE(s.dss);
  EXPECT_EQ(s.dss->data_ack->value, 0xca696bb8u);  // the first one wins
  EXPECT_EQ(s.count(OptionStatus::kDuplicate), 1);
}

TEST(SegmentOptionsTest, MalformedOptionDoesNotBlockALaterOne) {
  const SegmentOptions s = Interpret(kPureAck, {"1e 09 20 01 ca 69 6b b8 00", kDss2Hex});
  ASSERT_TRUE(s.dss);
  EXPECT_EQ(s.dss->data_ack->value, 1u);
  EXPECT_EQ(s.count(OptionStatus::kBadLength), 1);
  EXPECT_EQ(s.count(OptionStatus::kAccepted), 1);
}

TEST(SegmentOptionsTest, MpCapableFormMustMatchTcpFlags) {
  EXPECT_TRUE(Interpret(kSyn, {kMpcSynHex}).mp_capable);
  EXPECT_FALSE(Interpret(kSynAck, {kMpcSynHex}).mp_capable);
  EXPECT_TRUE(Interpret(kSynAck, {"1e 0c 01 01 e8 7d bb 19 ae 35 23 45"}).mp_capable);
  EXPECT_FALSE(Interpret(kSyn, {"1e 0c 01 01 e8 7d bb 19 ae 35 23 45"}).mp_capable);
  EXPECT_TRUE(Interpret(kPureAck, {kMpcAckHex}).mp_capable);
  EXPECT_FALSE(Interpret(kDataAck, {kMpcAckHex}).mp_capable);
  const std::string keys = "51 1f 0e bf ef 72 18 bf e8 7d bb 19 ae 35 23 45";
  const std::string d22 = "1e 16 01 01 " + keys + " 05 dc";
  const std::string d24 = "1e 18 01 81 " + keys + " 05 dc 12 34";
  EXPECT_TRUE(Interpret(kDataAck, {d22}).mp_capable);
  EXPECT_TRUE(Interpret(kDataAck, {d24}).mp_capable);  // csum variant accepted too
  const SegmentOptions wrong = Interpret(kPureAck, {d22});
  EXPECT_FALSE(wrong.mp_capable);
  EXPECT_EQ(wrong.count(OptionStatus::kWrongSegment), 1);
  // A SYN with payload (TFO) still expects the 4-byte form.
  EXPECT_TRUE(Interpret(SegmentFlags{true, false, false, true}, {kMpcSynHex}).mp_capable);
}

TEST(SegmentOptionsTest, TcpRstOnlyOnRst) {
  SegmentOptions s = Interpret(kPureAck, {kRstHex});
  EXPECT_FALSE(s.mp_tcprst);
  EXPECT_EQ(s.count(OptionStatus::kWrongSegment), 1);
  s = Interpret(kRstAck, {kRstHex});
  EXPECT_TRUE(s.mp_tcprst);
}

// interop §1.7, transcribed row by row as written there ("option: may follow ...").
// Classes: MPC-SYN (the SYN and SYN/ACK forms, "must be alone"), MPC-ACK (20/22/24).
TEST(SegmentOptionsTest, CoOccurrenceTableAllPairs) {
  struct Kind {
    const char* name;
    std::string hex;
    SegmentFlags flags;  // a segment on which the option alone is accepted
  };
  // Only MP_CAPABLE and MP_TCPRST depend on the TCP flags; the MPC-SYN class is represented by
  // its SYN/ACK form so that it can meet options that come with an ACK.
  constexpr SegmentFlags kAny{};
  constexpr SegmentFlags kRstOnly{false, false, true, false};
  const std::vector<Kind> kinds = {
      {"MPC-SYN", "1e 0c 01 01 e8 7d bb 19 ae 35 23 45", kSynAck},
      {"MPC-ACK", kMpcAckHex, kPureAck},
      {"JOIN", kJoinSynHex, kAny},
      {"DSS", kDssHex, kAny},
      {"ADD", kAddHex, kAny},
      {"RM", kRmHex, kAny},
      {"PRIO", kPrioHex, kAny},
      {"FASTCLOSE", kFastcloseHex, kAny},
      {"RST", kRstHex, kRstOnly},
      {"FAIL", kFailHex, kAny},
  };
  const std::set<std::pair<std::string, std::string>> may_follow = {
      {"MPC-ACK", "RM"},    {"JOIN", "RM"},       {"JOIN", "PRIO"},     {"DSS", "ADD"},
      {"DSS", "RM"},        {"DSS", "PRIO"},      {"DSS", "FASTCLOSE"}, {"DSS", "FAIL"},
      {"ADD", "DSS"},       {"ADD", "RM"},        {"ADD", "PRIO"},      {"RM", "MPC-ACK"},
      {"RM", "JOIN"},       {"RM", "DSS"},        {"RM", "ADD"},        {"RM", "PRIO"},
      {"PRIO", "JOIN"},     {"PRIO", "DSS"},      {"PRIO", "ADD"},      {"PRIO", "RM"},
      {"FASTCLOSE", "DSS"}, {"FASTCLOSE", "RST"}, {"RST", "FAIL"},      {"RST", "FASTCLOSE"},
      {"FAIL", "DSS"},      {"FAIL", "RST"},
  };
  int checked = 0;
  for (const Kind& first : kinds) {
    for (const Kind& second : kinds) {
      if (first.name == second.name) continue;
      // The segment must suit both options on their own (e.g. MP_TCPRST needs RST); skip
      // the pairs no segment can carry (an MPC SYN form with an MPC ACK form).
      SegmentFlags f{first.flags.syn || second.flags.syn, first.flags.ack || second.flags.ack,
                     first.flags.rst || second.flags.rst, false};
      if (Interpret(f, {first.hex}).empty() || Interpret(f, {second.hex}).empty()) continue;
      ++checked;
      const SegmentOptions s = Interpret(f, {first.hex, second.hex});
      const bool expected = may_follow.count({second.name, first.name}) > 0;
      EXPECT_EQ(s.count(OptionStatus::kAccepted), expected ? 2 : 1)
          << second.name << " after " << first.name;
      if (!expected) {
        EXPECT_EQ(s.count(OptionStatus::kNotCombinable), 1)
            << second.name << " after " << first.name;
      }
    }
  }
  EXPECT_EQ(checked, 88);  // 90 ordered pairs minus MPC-SYN/MPC-ACK both ways
}

TEST(SegmentOptionsTest, LaterOptionMustFitAllEarlierOnes) {
  // MP_TCPRST may follow MP_FASTCLOSE, but not DSS: with both accepted before it, it is ignored.
  const SegmentOptions s = Interpret(kRstAck, {kDssHex, kFastcloseHex, kRstHex});
  EXPECT_TRUE(s.dss && s.mp_fastclose);
  EXPECT_FALSE(s.mp_tcprst);
  EXPECT_EQ(s.count(OptionStatus::kNotCombinable), 1);
  // DSS + ADD_ADDR + RM_ADDR + MP_PRIO: every pair combinable, all four accepted.
  const SegmentOptions t = Interpret(kPureAck, {kDssHex, kAddHex, kRmHex, kPrioHex});
  EXPECT_EQ(t.count(OptionStatus::kAccepted), 4);
}

TEST(SegmentOptionsTest, BuilderReportsEachStatus) {
  SegmentOptionsBuilder b(kPureAck);
  EXPECT_EQ(b.Add(Hex(kDssHex)), OptionStatus::kAccepted);
  EXPECT_EQ(b.Add(Hex(kDss2Hex)), OptionStatus::kDuplicate);
  EXPECT_EQ(b.Add(Hex(kMpcSynHex)), OptionStatus::kWrongSegment);
  EXPECT_EQ(b.Add(Hex(kJoinSynHex)), OptionStatus::kNotCombinable);
  EXPECT_EQ(b.Add(Hex("1e 04 f0 00")), OptionStatus::kExperimental);
  EXPECT_EQ(b.Add(Hex("1e 04 90 00")), OptionStatus::kUnknownSubtype);
  EXPECT_EQ(b.Add(Hex("1e 05 01 01 00")), OptionStatus::kBadLength);
  EXPECT_EQ(b.Add(Hex("1e 04 00 01")), OptionStatus::kBadVersion);
  EXPECT_EQ(b.Add(Hex("1e 04 01 41")), OptionStatus::kBadFlags);
  EXPECT_EQ(b.Add(Hex("08 0a 00 00 00 01 00 00 00 02")), OptionStatus::kNotMptcp);
  int total = 0;
  for (uint8_t n : b.options().status_count) total += n;
  EXPECT_EQ(total, 10);
  EXPECT_FALSE(b.options().empty());
  EXPECT_EQ(kOptionStatusNames[static_cast<size_t>(OptionStatus::kNotCombinable)],
            "MptcpOptNotCombinable");
  // The status enum is a ready-made counter index (packet/counters.h).
  CounterSet<OptionStatus, kOptionStatusNames> counters;
  for (size_t i = 0; i < static_cast<size_t>(OptionStatus::kCount); ++i) {
    counters.Inc(static_cast<OptionStatus>(i), b.options().status_count[i]);
  }
  EXPECT_EQ(counters.Get(OptionStatus::kAccepted), 1u);
  EXPECT_EQ(counters.Get(OptionStatus::kBadLength), 1u);
}

}  // namespace
}  // namespace mproxy::mptcp
