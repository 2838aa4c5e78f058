// Reading fields of untrusted JSON (meta.json, config.json, a checkpoint's config) with
// their types checked first: nlohmann's get<int64_t>() of a floating-point value such as
// 1e109 is undefined behaviour (found by fuzz/fuzz_corpus under UBSan), of a string a
// type_error that names no field. Errors are thor::Error naming `what` and the field.
#pragma once
#include <map>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "thor/common/error.h"

namespace thor {

// v (the value of `key`) into out.
template <typename T>
void read_json_value(const nlohmann::json& v, const std::string& what, const std::string& key, T& out) {
  bool ok;
  const char* want;
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean(), want = "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    ok = v.is_number_integer(), want = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v.is_number(), want = "a number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    ok = v.is_string(), want = "a string";
  } else if constexpr (std::is_same_v<T, std::map<std::string, int64_t>>) {
    ok = v.is_object(), want = "an object of integers";
    if (ok)
      for (const auto& [k, x] : v.items()) ok = ok && x.is_number_integer();
  } else {
    static_assert(std::is_same_v<T, std::vector<std::string>>, "read_json_field: unsupported type");
    ok = v.is_array(), want = "a list of strings";
    if (ok)
      for (const auto& x : v) ok = ok && x.is_string();
  }
  if (!ok) throw Error(what + ": '" + key + "' must be " + want);
  v.get_to(out);
}

// j[key] into out, the key required.
template <typename T>
void read_json_field(const nlohmann::json& j, const std::string& what, const char* key, T& out) {
  if (!j.is_object() || !j.contains(key)) throw Error(what + ": '" + key + "' missing");
  read_json_value(j.at(key), what, key, out);
}

}  // namespace thor
