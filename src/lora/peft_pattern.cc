#include "lora/peft_pattern.h"

#include <regex.h>

#include <cctype>

namespace g4::lora {

struct PyFullMatch::Compiled {
  regex_t re{};
  bool compiled = false;
  ~Compiled() {
    if (compiled) regfree(&re);
  }
};

namespace {

// Python regex -> POSIX ERE, anchored for a full match. Empty on a construct we cannot translate exactly.
Result<std::string> to_posix(std::string_view py, std::string_view where) {
  auto refuse = [&](std::string_view what) {
    return Status::not_supported(std::string(where) + ": the pattern '" + std::string(py) + "' uses " + std::string(what) +
                                 ", which g4convert does not interpret (use ., *, +, ?, |, (), [] and \\. \\d \\w \\s)");
  };
  std::string out = "^(";
  bool in_class = false;
  for (size_t i = 0; i < py.size(); ++i) {
    const char c = py[i];
    if (c == '\\') {
      if (i + 1 >= py.size()) return refuse("a trailing backslash");
      const char n = py[++i];
      if (n == 'd') out += in_class ? "0-9" : "[0-9]";
      else if (n == 'w') out += in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
      else if (n == 's') out += in_class ? " \t\n\r\f\v" : "[ \t\n\r\f\v]";
      else if (std::string_view(".^$*+?()[]{}|\\-/").find(n) != std::string_view::npos) {
        if (in_class) {
          if (n == ']' || n == '\\' || n == '^' || n == '-') return refuse("an escaped '" + std::string(1, n) + "' inside []");
          out += n;
        } else {
          out += '\\';
          out += n;
        }
      } else if (std::isalnum(static_cast<unsigned char>(n))) {
        return refuse(std::string("the escape \\") + n);
      } else {
        out += n;
      }
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
      if (c == '[' && i + 1 < py.size() && py[i + 1] == ':') return refuse("a POSIX class");
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < py.size() && py[i + 1] == '^') out += py[++i];
      if (i + 1 < py.size() && py[i + 1] == ']') out += py[++i];  // a literal ']' first in the class
      continue;
    }
    if (c == '(' && i + 1 < py.size() && py[i + 1] == '?') {
      if (i + 2 < py.size() && py[i + 2] == ':') {
        out += '(';
        i += 2;
        continue;
      }
      return refuse("a (?...) group");
    }
    if ((c == '*' || c == '+' || c == '?' || c == '}') && i + 1 < py.size() && py[i + 1] == '?') {
      out += c;
      ++i;  // lazy: same set of full matches as greedy
      continue;
    }
    out += c;
  }
  if (in_class) return Status::invalid_argument(std::string(where) + ": the pattern '" + std::string(py) + "' has an unterminated [");
  out += ")$";
  return out;
}

}  // namespace

Result<PyFullMatch> PyFullMatch::compile(std::string_view python_pattern, std::string_view where) {
  G4_ASSIGN_OR_RETURN(const std::string posix, to_posix(python_pattern, where));
  auto compiled = std::make_shared<Compiled>();
  if (int rc = regcomp(&compiled->re, posix.c_str(), REG_EXTENDED | REG_NOSUB); rc != 0) {
    char buf[256];
    regerror(rc, &compiled->re, buf, sizeof buf);
    return Status::invalid_argument(std::string(where) + ": the pattern '" + std::string(python_pattern) + "' is not a valid regex: " + buf);
  }
  compiled->compiled = true;
  PyFullMatch m;
  m.re_ = std::move(compiled);
  return m;
}

bool PyFullMatch::matches(std::string_view text) const {
  const std::string s(text);  // regexec needs a terminated string
  return regexec(&re_->re, s.c_str(), 0, nullptr, 0) == 0;
}

bool suffix_matches(std::string_view name, std::string_view entry) {
  if (name == entry) return true;
  return name.size() > entry.size() && name.ends_with(entry) && name[name.size() - entry.size() - 1] == '.';
}

}  // namespace g4::lora
