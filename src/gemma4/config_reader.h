// Typed access to one JSON object of a config file, with messages that name the file and the field
// ("config.json: text_config.hidden_size: expected an integer, got \"64\""). Absent and null fields
// take the caller's default; a present field of the wrong type is an error, never a silent default.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace g4::gemma4 {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& object, std::string file, std::string path_prefix)
      : j_(object), file_(std::move(file)), prefix_(std::move(path_prefix)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const nlohmann::json& raw(const char* key) const { return j_.at(key); }

  Result<int64_t> integer(const char* key, int64_t fallback) const;
  Result<std::optional<int64_t>> optional_integer(const char* key) const;
  Result<double> number(const char* key, double fallback) const;
  Result<std::optional<double>> optional_number(const char* key) const;
  Result<bool> boolean(const char* key, bool fallback) const;
  Result<std::optional<std::string>> optional_string(const char* key) const;

  // "config.json: text_config.<key>: <why>"
  Status error(const std::string& key, const std::string& why) const;
  std::string where(const std::string& key) const { return file_ + ": " + prefix_ + key; }

 private:
  Status type_error(const char* key, const char* expected) const;
  const nlohmann::json& j_;
  std::string file_;
  std::string prefix_;
};

}  // namespace g4::gemma4
