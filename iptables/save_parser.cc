#include "iptables/save_parser.h"

namespace mproxy::iptables {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

size_t StaleSet::chain_count() const {
  size_t n = 0;
  for (const auto& t : tables) n += t.chains.size();
  return n;
}

bool IsOurChain(std::string_view chain, std::string_view prefix) {
  return !prefix.empty() && chain.size() > prefix.size() + 1 && chain.starts_with(prefix) &&
         chain[prefix.size()] == '-';
}

std::vector<std::string> SplitRuleLine(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false, quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size()) {
        cur += line[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (IsSpace(c)) {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else if (c == '"') {
      quoted = in_word = true;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(cur));
  return words;
}

StaleSet FindStale(std::string_view text, std::string_view prefix) {
  StaleSet set;
  StaleTable cur;
  bool in_table = false;
  auto flush = [&] {
    if (in_table && (!cur.chains.empty() || !cur.jumps.empty())) set.tables.push_back(cur);
    cur = StaleTable{};
    in_table = false;
  };
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '*') {
      flush();
      cur.table = std::string(Trim(line.substr(1)));
      in_table = !cur.table.empty();
      continue;
    }
    if (!in_table) continue;
    if (line == "COMMIT") {
      flush();
      continue;
    }
    if (line[0] == ':') {
      // ":NAME POLICY [packets:bytes]"
      std::string_view decl = line.substr(1);
      std::string_view name = decl.substr(0, decl.find_first_of(" \t"));
      if (IsOurChain(name, prefix)) cur.chains.emplace_back(name);
      continue;
    }
    if (!line.starts_with("-A ")) continue;
    std::vector<std::string> words = SplitRuleLine(line);
    if (words.size() < 2 || IsOurChain(words[1], prefix)) continue;  // ours: goes with the chain
    for (size_t i = 2; i + 1 < words.size(); ++i) {
      const std::string& w = words[i];
      if ((w == "-j" || w == "--jump" || w == "-g" || w == "--goto") &&
          IsOurChain(words[i + 1], prefix)) {
        cur.jumps.emplace_back(Trim(line.substr(3)));
        break;
      }
    }
  }
  flush();  // a dump cut short without COMMIT still reports what it showed
  return set;
}

std::string BuildRemoval(const StaleSet& set) {
  std::string t;
  for (const auto& table : set.tables) {
    t += "*" + table.table + "\n";
    for (const auto& j : table.jumps) t += "-D " + j + "\n";
    for (const auto& c : table.chains) t += "-F " + c + "\n";
    for (const auto& c : table.chains) t += "-X " + c + "\n";
    t += "COMMIT\n";
  }
  return t;
}

}  // namespace mproxy::iptables
