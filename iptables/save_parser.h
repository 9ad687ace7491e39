// Finding mproxy's rules in iptables-save output, and the iptables-restore text that removes them.
// Pure functions so the crash-recovery path is unit-tested on sample dumps
// (tests/unit/iptables/save_parser_test.cc); Executor::RemoveStale() wires them to the tools.
//
// Ownership rule: a chain is ours iff it is named "<prefix>-<something>" (prefixes cannot contain
// '-', see Validate()). A rule is ours to delete iff it sits in a foreign chain and jumps (-j) or
// goes (-g) to one of our chains; rules inside our chains go away with the chain (-F, -X). Nothing
// else in the dump is ever named in the removal text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mproxy::iptables {

struct StaleTable {
  std::string table;                // "raw", "mangle", ...
  std::vector<std::string> jumps;   // rule specs as saved, without the leading "-A "
  std::vector<std::string> chains;  // our chains declared in this table, in dump order
};

struct StaleSet {
  std::vector<StaleTable> tables;  // only tables holding something of ours
  [[nodiscard]] size_t chain_count() const;
  [[nodiscard]] bool empty() const { return tables.empty(); }
};

// True iff `chain` is "<prefix>-" followed by at least one character.
bool IsOurChain(std::string_view chain, std::string_view prefix);

// Splits one iptables-save rule line into words the way iptables-restore does: whitespace
// separates, double quotes group, backslash escapes the next character inside quotes.
std::vector<std::string> SplitRuleLine(std::string_view line);

// Everything of ours in an iptables-save / ip6tables-save dump. Tolerates comments, blank lines,
// CRLF and unknown lines (ignored).
StaleSet FindStale(std::string_view save_text, std::string_view prefix);

// iptables-restore --noflush text deleting `set`: per table the jumps (-D by rule spec), then
// every chain flushed (they may jump to each other), then deleted. Empty when `set` is empty.
std::string BuildRemoval(const StaleSet& set);

}  // namespace mproxy::iptables
