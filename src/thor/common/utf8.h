// The one UTF-8 decoder of the project (corpus validation, BLEU/chrF tokenisation).
#pragma once
#include <cstdint>
#include <string>

namespace thor {

// Decodes the code point starting at s[i] into cp and advances i past it. On an invalid
// sequence (bad lead or continuation byte, truncation, overlong form, surrogate, or a
// value above U+10FFFF) returns false, sets cp to the lead byte and advances i by one.
inline bool utf8_next(const std::string& s, size_t& i, char32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
  auto invalid = [&] {
    cp = c;
    ++i;
    return false;
  };
  if (extra == 0) {
    cp = c;
    ++i;
    return true;
  }
  if (extra < 0 || i + extra >= s.size()) return invalid();
  char32_t v = c & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) {
    auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return invalid();
    v = (v << 6) | (b & 0x3F);
  }
  if ((extra == 1 && v < 0x80) || (extra == 2 && v < 0x800) || (extra == 3 && v < 0x10000) || v > 0x10FFFF ||
      (v >= 0xD800 && v <= 0xDFFF))
    return invalid();
  cp = v;
  i += extra + 1;
  return true;
}

// s with every invalid byte replaced by U+FFFD; *replaced counts them (may be null).
inline std::string replace_invalid_utf8(const std::string& s, int64_t* replaced = nullptr) {
  std::string out;
  out.reserve(s.size());
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    if (utf8_next(s, i, cp)) {
      out.append(s, start, i - start);
    } else {
      out += "\xEF\xBF\xBD";
      if (replaced) ++*replaced;
    }
  }
  return out;
}

}  // namespace thor
