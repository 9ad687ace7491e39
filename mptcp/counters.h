// Every decision the MPTCP engine makes on the data path has a counter (DEVELOPERS.md), named
// like the kernel's MPTcpExt MIB where there is a kernel equivalent so a test can put the two side
// by side.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "packet/counters.h"

namespace mproxy::mptcp {

#define MPROXY_MPTCP_COUNTERS(X)                                                            \
  X(kPackets, "MpPackets")                       /* every packet handed to the engine */    \
  X(kMalformed, "MpMalformed")                   /* not parseable as IP/TCP: passed */      \
  X(kNotSelected, "MpNotSelected")               /* port not converted: passed */           \
  X(kNoConnection, "MpNoConnection")             /* non-SYN of an unknown flow: passed */   \
  X(kActiveOpen, "MpActiveOpen")                 /* local SYN got MP_CAPABLE */             \
  X(kPassiveOpen, "MpPassiveOpen")               /* peer MP_CAPABLE SYN accepted */         \
  X(kPassivePlainSyn, "MpPassivePlainSyn")       /* peer SYN without MP_CAPABLE: passed */  \
  X(kSynRetransmit, "MpSynRetransmit")                                                      \
  X(kConverted, "MpConverted")                   /* MP_CAPABLE handshake completed */       \
  X(kFallbackNoMpcSynAck, "MpFallbackNoMpcSynAck")                                          \
  X(kFallbackNoMpcAck, "MpFallbackNoMpcAck")                                                \
  X(kFallbackInfiniteMap, "MpFallbackInfiniteMap")                                          \
  X(kFallbackMpFail, "MpFallbackMpFail")                                                    \
  X(kFallbackPackets, "MpFallbackPackets")       /* packets of fallen-back flows, passed */ \
  X(kFallbackSynRetrans, "MpFallbackSynRetrans") /* MPC SYN unanswered twice: plain SYN */  \
  X(kFallbackPeerNoDss, "MpFallbackPeerNoDss")   /* peer sends data without DSS */          \
  X(kFallbackImpossible, "MpFallbackImpossible") /* fallback with shifted maps: dropped */   \
  X(kMpFailRx, "MpMpFailRx")                                                                \
  X(kJoinRejected, "MpJoinRejected")             /* MP_JOIN SYN refused: RST forged */     \
  X(kTxMappingReused, "MpTxMappingReused")       /* retransmission carried its mapping */   \
  X(kTxRemapped, "MpTxRemapped")                 /* segment straddles sent mappings */      \
  X(kStaleDataAck, "MpStaleDataAck")             /* reordered DATA_ACK delivered as old */  \
  X(kSackStripped, "MpSackStripped")             /* SACK not translatable: removed */       \
  X(kHandshakeRst, "MpHandshakeRst")             /* RST during the handshake: passed */     \
  X(kBadSynAckMpc, "MpBadSynAckMpc")             /* SYN/ACK MP_CAPABLE unusable */          \
  X(kBadAckKeys, "MpBadAckKeys")                 /* 3rd ACK echoed a key that is not ours */ \
  X(kKeyGenFailed, "MpKeyGenFailed")                                                        \
  X(kMpcAckTx, "MpMpcAckTx")                     /* MP_CAPABLE ACK (20) added */            \
  X(kMpcDataTx, "MpMpcDataTx")                   /* MP_CAPABLE+data (22/24) added */        \
  X(kDssTx, "MpDssTx")                           /* DSS added to an outbound packet */      \
  X(kDssRx, "MpDssRx")                                                                      \
  X(kDataFinTx, "MpDataFinTx")                                                              \
  X(kDataFinRx, "MpDataFinRx")                                                              \
  X(kMappingRx, "MpMappingRx")                   /* new peer mapping recorded */            \
  X(kMappingConflict, "MpMappingConflict")       /* changed mapping for mapped bytes: drop */ \
  X(kMappingNotOwn, "MpMappingNotOwn")           /* mapping not covering its segment: unused */ \
  X(kRecvTableFull, "MpRecvTableFull")           /* RECV table at its cap: farthest dropped */ \
  X(kNoMapping, "MpNoMapping")                   /* data not covered by a mapping: drop */  \
  X(kSpansMappings, "MpSpansMappings")           /* data spans unrelated mappings: drop */  \
  X(kCsumBad, "MpCsumBad")                       /* DSS checksum mismatch: drop */          \
  X(kCsumUnverified, "MpCsumUnverified")         /* mapping spans segments: not checked */  \
  X(kCsumMissing, "MpCsumMissing")               /* negotiated but absent: drop */          \
  X(kDataAckBeyondSent, "MpDataAckBeyondSent")   /* ignored, like Linux */                  \
  X(kNoDataAck, "MpNoDataAck")                   /* inbound without DATA_ACK */             \
  X(kSignalConsumed, "MpSignalConsumed")         /* pure signalling ACK not delivered */    \
  X(kSubflowOnlyConsumed, "MpSubflowOnlyConsumed") /* empty segment after our FIN: kept */  \
  X(kInboundKeptDss, "MpInboundKeptDss")         /* translation was a no-op: packet left as is */ \
  X(kOptionIgnored, "MpOptionIgnored")           /* kind-30 option Linux would ignore */    \
  X(kSackDropped, "MpSackDropped")               /* SACK blocks dropped for option space */ \
  X(kOptionSpace, "MpOptionSpace")               /* could not fit our option: drop */       \
  X(kMssClamped, "MpMssClamped")                                                            \
  X(kTooLarge, "MpTooLarge")                     /* payload > 65535: cannot map, drop */    \
  X(kEmitError, "MpEmitError")                                                              \
  X(kFastcloseTx, "MpFastcloseTx")                                                          \
  X(kFastcloseRx, "MpFastcloseRx")                                                          \
  X(kFastcloseBadKey, "MpFastcloseBadKey")       /* ignored, like Linux */                  \
  X(kRstTx, "MpRstTx")                                                                      \
  X(kRstRx, "MpRstRx")                                                                      \
  X(kSubflowFinTx, "MpSubflowFinTx")             /* forged after DATA_FIN acked */          \
  X(kSubflowFinRetransmit, "MpSubflowFinRetransmit")                                        \
  X(kSubflowFinRx, "MpSubflowFinRx")                                                        \
  X(kSubflowAckTx, "MpSubflowAckTx")             /* forged ACK of the peer's subflow FIN */ \
  X(kForgeError, "MpForgeError")                                                            \
  X(kTimeoutHandshake, "MpTimeoutHandshake")                                                \
  X(kTimeoutIdle, "MpTimeoutIdle")                                                          \
  X(kTimeoutFin, "MpTimeoutFin")                                                            \
  X(kClosed, "MpClosed")                         /* connection ended (FIN or RST) */        \
  X(kFreed, "MpFreed")                           /* state released */                       \
  X(kJoinSynTx, "MpJoinSynTx")                   /* active join: MP_JOIN SYN forged */      \
  X(kJoinSynRetransmit, "MpJoinSynRetransmit")                                              \
  X(kJoinSynAckRx, "MpJoinSynAckRx")             /* valid SYN/ACK of our join */            \
  X(kJoinSynAckBadHmac, "MpJoinSynAckBadHmac")   /* RST + MP_TCPRST 1, subflow freed */     \
  X(kJoinSynAckNoJoin, "MpJoinSynAckNoJoin")     /* SYN/ACK without MP_JOIN: RST */         \
  X(kJoinAckTx, "MpJoinAckTx")                   /* third ACK (HMAC-A) forged */            \
  X(kJoinAckRetransmit, "MpJoinAckRetransmit")                                              \
  X(kJoinRefused, "MpJoinRefused")               /* peer reset our join */                  \
  X(kJoinTimeout, "MpJoinTimeout")               /* join handshake unanswered */            \
  X(kJoinPreEstDrop, "MpJoinPreEstDrop")         /* segment before the 4th ACK: dropped */  \
  X(kJoinFourthAckRx, "MpJoinFourthAckRx")                                                  \
  X(kJoinSynRx, "MpJoinSynRx")                   /* passive: MP_JOIN SYN received */        \
  X(kJoinNoToken, "MpJoinNoToken")               /* unknown token: RST + MP_TCPRST 1 */     \
  X(kJoinSynAckTx, "MpJoinSynAckTx")                                                        \
  X(kJoinAckRx, "MpJoinAckRx")                   /* passive: valid third ACK */             \
  X(kJoinAckBadHmac, "MpJoinAckBadHmac")         /* RST + MP_TCPRST 1, subflow freed */     \
  X(kJoinAckNoJoin, "MpJoinAckNoJoin")           /* third ACK without MP_JOIN: RST */       \
  X(kJoinFourthAckTx, "MpJoinFourthAckTx")                                                  \
  X(kJoinEstablished, "MpJoinEstablished")                                                  \
  X(kJoinRstTx, "MpJoinRstTx")                   /* RST forged on a join subflow */         \
  X(kJoinDupSyn, "MpJoinDupSyn")                 /* SYN for a known join tuple */           \
  X(kJoinLimit, "MpJoinLimit")                   /* max_subflows reached: RST */            \
  X(kJoinTupleInUse, "MpJoinTupleInUse")         /* non-join SYN on a join's tuple: drop */ \
  X(kSubflowSynDropped, "MpSubflowSynDropped")   /* SYN on an established join: ACK, drop */ \
  X(kSubflowSeqUnmapped, "MpSubflowSeqUnmapped") /* seq before the subflow's ISN+1: drop */ \
  X(kProbeAckTx, "MpProbeAckTx")                 /* keepalive/window probe answered */      \
  X(kRstChallengeAck, "MpRstChallengeAck")       /* RST in window, not exact: ACK, drop */  \
  X(kRstBadSeq, "MpRstBadSeq")                   /* RST out of window: dropped */           \
  X(kMpPrioRepeated, "MpMpPrioRepeated") /* data kept coming on a backup: MP_PRIO again */  \
  X(kMpPrioTx, "MpMpPrioTx")                                                                \
  X(kMpPrioRx, "MpMpPrioRx")                                                                \
  X(kRemoveAddrTx, "MpRemoveAddrTx")                                                        \
  X(kRemoveAddrRx, "MpRemoveAddrRx")                                                        \
  X(kSideAckTx, "MpSideAckTx")                   /* subflow ACK forged on another subflow */ \
  X(kNonActiveAckConsumed, "MpNonActiveAckConsumed") /* empty, no news, non-active: drop */ \
  X(kNoSubflow, "MpNoSubflow")                   /* no usable subflow: outbound dropped */  \
  X(kTxSameSubflow, "MpTxSameSubflow")           /* retransmission on its first subflow */  \
  X(kTxMovedSubflow, "MpTxMovedSubflow")         /* retransmission at fresh SSN space */    \
  X(kTxGapReserved, "MpTxGapReserved")  /* out-of-order local segment: SSNs kept for the gap */ \
  X(kTxGapNotReserved, "MpTxGapNotReserved")  /* gap too large or already mapped: not kept */ \
  X(kTxStaleSubflow, "MpTxStaleSubflow")         /* head unacked: subflow retired */        \
  X(kTxStraddleSplit, "MpTxStraddleSplit")       /* retx sent piecewise on its subflows */  \
  X(kTsOffsetAdjusted, "MpTsOffsetAdjusted")     /* tsval kept monotonic for the stack */   \
  X(kWindowRescaled, "MpWindowRescaled")                                                    \
  X(kSubflowClosedRx, "MpSubflowClosedRx")       /* peer closed one subflow (FIN) */        \
  X(kSubflowRstRx, "MpSubflowRstRx")             /* peer reset one subflow */               \
  X(kSubflowClosedPackets, "MpSubflowClosedPackets") /* for a closed subflow: dropped */    \
  X(kSubflowClosedData, "MpSubflowClosedData")   /* data on a subflow we left: delivered */ \
  X(kGoneSubflowAckTx, "MpGoneSubflowAckTx")     /* ...and acknowledged on it */          \
  X(kMultiFallback, "MpMultiFallback")           /* fallback signal with joins: dropped */  \
  X(kHandoverStarted, "MpHandoverStarted")                                                  \
  X(kHandoverMoved, "MpHandoverMoved")           /* a connection's sending moved */         \
  X(kHandoverFailed, "MpHandoverFailed")         /* a connection's handover failed */    \
  X(kHandoverSuperseded, "MpHandoverSuperseded") /* a later request took over the join */ \
  X(kRxOutOfOrder, "MpRxOutOfOrder")             /* segment above a hole on its subflow */ \
  X(kDupAckTx, "MpDupAckTx")                     /* duplicate ACK forged on a holed subflow */ \
  X(kRxDupAckTx, "MpRxDupAckTx")                 /* ACK answering an old retransmission */ \
  X(kSackTx, "MpSackTx")                         /* subflow SACK blocks sent */           \
  X(kSackRoom, "MpSackRoom")                     /* SACK blocks left out: no option room */ \
  X(kSackProjected, "MpSackProjected") /* peer's subflow SACK -> local stack, via SEND table */ \
  X(kAddAddrRx, "MpAddAddrRx")                   /* peer's ADD_ADDR, HMAC valid: echoed */ \
  X(kAddAddrBadHmac, "MpAddAddrBadHmac")         /* peer's ADD_ADDR, HMAC wrong: ignored */ \
  X(kAddAddrEchoTx, "MpAddAddrEchoTx")                                                      \
  X(kAddAddrEchoRx, "MpAddAddrEchoRx")           /* an echo; ours stops its retransmission */ \
  X(kAddAddrTx, "MpAddAddrTx")                   /* our ADD_ADDR, first transmission */    \
  X(kAddAddrRetx, "MpAddAddrRetx")               /* our ADD_ADDR again: no echo yet */     \
  X(kAddAddrGaveUp, "MpAddAddrGaveUp")           /* never echoed after all retransmissions */ \
  X(kAddAddrNoRoom, "MpAddAddrNoRoom")           /* no subflow or option room to send it on */ \
  X(kAnnounceRemoveTx, "MpAnnounceRemoveTx")     /* REMOVE_ADDR: an announced address went */ \
  X(kAnnounceRemoveNoRoom, "MpAnnounceRemoveNoRoom") /* ... but nothing could carry it */ \
  X(kIcmpPtbRx, "MpIcmpPtbRx")                   /* frag-needed / packet-too-big received */ \
  X(kIcmpPtbTranslated, "MpIcmpPtbTranslated")   /* ours: quote and MTU rewritten */        \
  X(kIcmpPtbNotOurs, "MpIcmpPtbNotOurs")         /* not a converted flow's segment: passed */ \
  X(kIcmpPtbSeqUnmapped, "MpIcmpPtbSeqUnmapped") /* SSN not in the SEND table: snd_una used */ \
  X(kIcmpPtbV6Floor, "MpIcmpPtbV6Floor")         /* lowered MTU raised to 1280 (RFC 8200) */ \
  X(kIcmpMalformed, "MpIcmpMalformed")           /* unusable PTB or bad checksum: passed */  \
  X(kIcmpOther, "MpIcmpOther")                   /* other ICMP type: passed */               \
  X(kPmtuDfCleared, "MpPmtuDfCleared") /* initial-subflow packet over the told MTU: DF off */

enum class Counter : size_t {
#define MPROXY_X(e, n) e,
  MPROXY_MPTCP_COUNTERS(MPROXY_X)
#undef MPROXY_X
      kCount
};

inline constexpr std::array<std::string_view, static_cast<size_t>(Counter::kCount)> kCounterNames{
#define MPROXY_X(e, n) n,
    MPROXY_MPTCP_COUNTERS(MPROXY_X)
#undef MPROXY_X
};

}  // namespace mproxy::mptcp
