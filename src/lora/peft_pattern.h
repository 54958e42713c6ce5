// The name matching PEFT 0.21.2 applies to adapter_config.json patterns, so that the adapter reader decides
// which module or parameter a key belongs to exactly as PeftModel.from_pretrained would:
//   target_modules / exclude_modules as a list: the name equals an entry or ends with "." + entry;
//   as a string: re.fullmatch(pattern, name) (peft utils/other.py match_target_against_key);
//   rank_pattern / alpha_pattern keys: re.match(rf"(.*\.)?({key})$", name) (get_pattern_key), first key wins.
// Python regexes are run through POSIX extended regexes: the constructs PEFT configs use (., *, +, ?, |, (),
// [], \. and \d \w \s) translate exactly; lazy quantifiers become greedy (a match/no-match answer cannot tell
// them apart); anything else (look-arounds, back references, named groups) is refused, never guessed.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "runtime/status.h"

namespace g4::lora {

// A compiled Python regex, answering re.fullmatch. Thread-safe after compile.
class PyFullMatch {
 public:
  // kNotSupported naming `where` for a construct the translation does not cover, kInvalidArgument for a
  // pattern that does not compile.
  static Result<PyFullMatch> compile(std::string_view python_pattern, std::string_view where);
  bool matches(std::string_view text) const;

 private:
  struct Compiled;
  std::shared_ptr<const Compiled> re_;
};

// The list form of target_modules / exclude_modules: name == entry or name ends with "." + entry.
bool suffix_matches(std::string_view name, std::string_view entry);

}  // namespace g4::lora
