#include "gemma4/config_reader.h"

#include <cmath>

namespace g4::gemma4 {

Status ConfigReader::error(const std::string& key, const std::string& why) const {
  return Status::invalid_argument(where(key) + ": " + why);
}

Status ConfigReader::type_error(const char* key, const char* expected) const {
  std::string got = j_.at(key).dump();
  if (got.size() > 40) got = got.substr(0, 40) + "...";
  return error(key, std::string("expected ") + expected + ", got " + got);
}

Result<std::optional<int64_t>> ConfigReader::optional_integer(const char* key) const {
  if (!has(key)) return std::optional<int64_t>();
  const auto& v = j_.at(key);
  if (v.is_number_integer()) return std::optional<int64_t>(v.get<int64_t>());
  // JSON writers sometimes emit 64.0 for an int field; accept exact integral floats only.
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d > -9e15 && d < 9e15 && d == std::floor(d))  // range first: casting an out-of-range double is UB
      return std::optional<int64_t>(static_cast<int64_t>(d));
  }
  return type_error(key, "an integer");
}

Result<int64_t> ConfigReader::integer(const char* key, int64_t fallback) const {
  G4_ASSIGN_OR_RETURN(std::optional<int64_t> v, optional_integer(key));
  return v.value_or(fallback);
}

Result<std::optional<double>> ConfigReader::optional_number(const char* key) const {
  if (!has(key)) return std::optional<double>();
  const auto& v = j_.at(key);
  if (!v.is_number()) return type_error(key, "a number");
  return std::optional<double>(v.get<double>());
}

Result<double> ConfigReader::number(const char* key, double fallback) const {
  G4_ASSIGN_OR_RETURN(std::optional<double> v, optional_number(key));
  return v.value_or(fallback);
}

Result<bool> ConfigReader::boolean(const char* key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = j_.at(key);
  if (!v.is_boolean()) return type_error(key, "true or false");
  return v.get<bool>();
}

Result<std::optional<std::string>> ConfigReader::optional_string(const char* key) const {
  if (!has(key)) return std::optional<std::string>();
  const auto& v = j_.at(key);
  if (!v.is_string()) return type_error(key, "a string");
  return std::optional<std::string>(v.get<std::string>());
}

}  // namespace g4::gemma4
